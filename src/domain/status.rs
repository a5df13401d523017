//! Order and payment statuses and the transitions allowed between them.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use utoipa::ToSchema;

/// Where an order is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Draft,
    Confirmed,
    Processing,
    Shipped,
    Delivered,
    Cancelled,
    Refunded,
    Failed,
}

impl OrderStatus {
    /// Every status, in life order.
    pub const ALL: [OrderStatus; 8] = [
        OrderStatus::Draft,
        OrderStatus::Confirmed,
        OrderStatus::Processing,
        OrderStatus::Shipped,
        OrderStatus::Delivered,
        OrderStatus::Cancelled,
        OrderStatus::Refunded,
        OrderStatus::Failed,
    ];

    /// The wire and database name.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Draft => "draft",
            OrderStatus::Confirmed => "confirmed",
            OrderStatus::Processing => "processing",
            OrderStatus::Shipped => "shipped",
            OrderStatus::Delivered => "delivered",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Refunded => "refunded",
            OrderStatus::Failed => "failed",
        }
    }

    /// The transition table: which statuses may follow this one.
    pub fn can_become(self, to: OrderStatus) -> bool {
        use OrderStatus::*;
        matches!(
            (self, to),
            (Draft, Confirmed | Cancelled | Failed)
                | (Confirmed, Processing | Cancelled)
                | (Processing, Shipped | Cancelled)
                | (Shipped, Delivered | Refunded)
                | (Delivered, Refunded)
        )
    }

    /// Moves that `PUT /status` may make: the table's moves forward along the
    /// fulfilment path only; cancel and refund have flows of their own.
    pub fn can_be_set_manually(self, to: OrderStatus) -> bool {
        use OrderStatus::*;
        matches!(to, Processing | Shipped | Delivered) && self.can_become(to)
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OrderStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OrderStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown order status {s:?}"))
    }
}

/// Where the order's money is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    Pending,
    Captured,
    PartiallyRefunded,
    Refunded,
    Failed,
}

impl PaymentStatus {
    /// The wire and database name.
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Pending => "pending",
            PaymentStatus::Captured => "captured",
            PaymentStatus::PartiallyRefunded => "partially_refunded",
            PaymentStatus::Refunded => "refunded",
            PaymentStatus::Failed => "failed",
        }
    }
}

impl FromStr for PaymentStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        use PaymentStatus::*;
        [Pending, Captured, PartiallyRefunded, Refunded, Failed]
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown payment status {s:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::OrderStatus::*;
    use super::*;

    #[test]
    fn final_statuses_have_no_way_out() {
        for from in [Cancelled, Refunded, Failed] {
            for to in OrderStatus::ALL {
                assert!(!from.can_become(to), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn manual_moves_are_exactly_the_fulfilment_path() {
        let mut moves = Vec::new();
        for from in OrderStatus::ALL {
            for to in OrderStatus::ALL {
                if from.can_be_set_manually(to) {
                    moves.push((from, to));
                }
            }
        }
        assert_eq!(
            moves,
            [
                (Confirmed, Processing),
                (Processing, Shipped),
                (Shipped, Delivered)
            ]
        );
    }

    #[test]
    fn a_shipped_or_delivered_order_can_become_refunded() {
        assert!(Shipped.can_become(Refunded));
        assert!(Delivered.can_become(Refunded));
        assert!(!Shipped.can_be_set_manually(Refunded));
    }

    #[test]
    fn names_round_trip() {
        for st in OrderStatus::ALL {
            assert_eq!(st.as_str().parse::<OrderStatus>().unwrap(), st);
        }
    }
}
