//! What the domain refuses: a change that would break the order's rules.

use super::OrderStatus;

/// A change the order's rules do not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("an order cannot go from {from} to {to}")]
    InvalidTransition { from: OrderStatus, to: OrderStatus },
    #[error("item {item_id} has {left} units left, not {asked}")]
    QuantityExceeded { item_id: i32, left: i64, asked: i64 },
    #[error("the order has no item {0}")]
    UnknownItem(i32),
    #[error("item {0} is named more than once")]
    ItemNamedTwice(i32),
    #[error("the order has no return {0}")]
    UnknownReturn(uuid::Uuid),
    #[error("only a delivered order can be returned; this one is {0}")]
    NotReturnable(OrderStatus),
    #[error("the return window of this order has closed")]
    ReturnWindowClosed,
    #[error("a refund of {asked} would exceed what is left of the capture ({left})")]
    RefundExceedsCapture { asked: String, left: String },
    #[error("{asked} is more than the refunds the order owes ({owed})")]
    RefundExceedsOwed { asked: String, owed: String },
    #[error("an amount would exceed the largest amount the service keeps")]
    AmountOverflow,
}
