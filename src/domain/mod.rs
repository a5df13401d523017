//! Pure order types and rules: no I/O here.

mod actor;
mod change;
mod change_book;
mod change_request;
mod claim;
mod currency;
mod edits;
mod error;
mod exchange;
mod give_back;
mod ledger;
mod money;
mod order;
pub mod proration;
mod refusal;
mod returns;
mod schema;
mod status;
mod telling;

pub use actor::Actor;
pub use change::{
    AddressChange, ChangeError, ChangeLine, ChangePlan, ChangedOrder, Delta, LineTerms, Operation,
    PlannedCharge, PlannedRefund, Settlement, StockLine, StockMoves, Totals, TotalsOf,
    MAX_OPERATIONS,
};
pub use change_book::{
    Change, ChangeBook, ChangeSettlement, ChangeStatus, ChangeView, MadeCharge, MadeRefund, Moved,
    Quote, QuoteHold, QuoteStatus, QuoteView, StepOutcome,
};
pub use change_request::{ChangeRequest, ChangeRequestView, Preview, RequestStatus};
pub use claim::{Claim, ClaimItem, ClaimStatus, ClaimType, Resolution};
pub use currency::Currency;
pub use edits::FieldChange;
pub use error::DomainError;
pub use exchange::{Exchange, ExchangeSettlement, ExchangeStatus, NewLine};
pub use give_back::{GiveBack, GiveBackLine, ItemQuantity, SkuQuantity};
pub use ledger::{Ledger, LedgerPayment, Movement};
pub use money::{Money, MoneyError, MoneyInput};
pub use order::{
    AddedBy, Attention, Compensation, Failure, FieldError, HeldRuns, Hold, NewItem, NewOrder,
    NewPayment, Order, OrderEvent, OrderItem, OrderNotification, OrderView, OutsideRefund,
    PaymentAttempt, StatusChange, MAX_ITEMS, MAX_QUANTITY,
};
pub use proration::Basis;
pub use refusal::Refusal;
pub use returns::{Return, ReturnItem, ReturnStatus};
pub use status::{OrderStatus, PaymentStatus};
pub use telling::Telling;
