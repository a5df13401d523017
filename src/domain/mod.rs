//! Pure order types and rules: no I/O here.

mod currency;
mod money;
mod order;
mod status;

pub use currency::Currency;
pub use money::{Money, MoneyError};
pub use order::{
    Failure, FieldError, NewItem, NewOrder, NewPayment, Order, OrderEvent, OrderItem, OrderView,
    PaymentAttempt, StatusChange,
};
pub use status::{OrderStatus, PaymentStatus};
