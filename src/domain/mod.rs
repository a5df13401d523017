//! Pure order types and rules: no I/O here.

mod currency;
mod edits;
mod error;
mod give_back;
mod money;
mod order;
pub mod proration;
mod refusal;
mod returns;
mod schema;
mod status;

pub use currency::Currency;
pub use edits::FieldChange;
pub use error::DomainError;
pub use give_back::{GiveBack, GiveBackLine, ItemQuantity, SkuQuantity};
pub use money::{Money, MoneyError, MoneyInput};
pub use order::{
    Attention, Compensation, Failure, FieldError, HeldRuns, NewItem, NewOrder, NewPayment, Order,
    OrderEvent, OrderItem, OrderNotification, OrderView, OutsideRefund, PaymentAttempt,
    StatusChange, MAX_ITEMS, MAX_QUANTITY,
};
pub use refusal::Refusal;
pub use returns::{Return, ReturnItem, ReturnStatus};
pub use status::{OrderStatus, PaymentStatus};
