//! JSON Schema shapes of domain values that a derive cannot state.

use std::borrow::Cow;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

/// A string as the body reader takes it outside free text: no control character.
const TEXT: &str = r"^[^\u0000-\u001F\u007F-\u009F]*$";
/// A string of free text: line breaks and tabs, but no other control character.
const FREE_TEXT: &str = r"^[^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*$";

/// An object of free text (an address, metadata): any JSON, whose keys hold no
/// control character and whose strings are free text, as the body reader takes it.
pub struct FreeObject;

impl PartialSchema for FreeObject {
    fn schema() -> RefOr<Schema> {
        let key = ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(TEXT));
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property_names(Some(key))
            .additional_properties(Some(Ref::from_schema_name("FreeValue")))
            .into()
    }
}

impl ToSchema for FreeObject {
    fn name() -> Cow<'static, str> {
        "FreeObject".into()
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        let text = ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(FREE_TEXT));
        let scalar = |t: Type| ObjectBuilder::new().schema_type(t);
        let value = OneOfBuilder::new()
            .description(Some(
                "A value of free text: any JSON, its strings free text.",
            ))
            .item(text)
            .item(scalar(Type::Number))
            .item(scalar(Type::Boolean))
            .item(scalar(Type::Null))
            .item(ArrayBuilder::new().items(Ref::from_schema_name("FreeValue")))
            .item(Ref::from_schema_name("FreeObject"));
        schemas.push(("FreeValue".into(), value.into()));
    }
}
