//! Who asked for a change of an order.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Who asked for a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Actor {
    pub role: String,
    pub sub: Option<String>,
}
