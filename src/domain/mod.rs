//! Pure order types and rules: no I/O here.

mod currency;
mod error;
mod money;
mod order;
pub mod proration;
mod status;

pub use currency::Currency;
pub use error::DomainError;
pub use money::{Money, MoneyError};
pub use order::{
    Attention, Compensation, Failure, FieldError, NewItem, NewOrder, NewPayment, Order, OrderEvent,
    OrderItem, OrderNotification, OrderView, PaymentAttempt, StatusChange,
};
pub use status::{OrderStatus, PaymentStatus};
