//! Claims of a shipped or delivered order (api-changes.md §7).
//!
//! Opening, receiving, rejecting and expiring a claim each write it at one new
//! version (`update_read_model` with its event and notification).
//!
//! Resolving it, the saga `resolve_claim`:
//! 1. `reserve_stock` of the replacement [`release_stock`];
//! 2. `commit_stock`;
//! 3. `create_fulfillment` of the replacement: the point of no return. A refusal
//!    in 1-3 is undone and the claim stays as it was (`409`);
//! 4. `refund_payment` of the units' share, outstanding first;
//! 5. `update_read_model`: the claim `resolved`, its units refunded, returned or
//!    replaced, the replacement a new item (6. `order.claim_resolved`,
//!    `claim_resolved`, `refund_issued`).

use super::exchanges::{commit_and_ship, refund, refunds_made, reserve, stock_lines};
use super::saga::{Saga, Step};
use super::undo::{apply, compensate, Undone};
use crate::domain::{Claim, ClaimStatus, Money, NewLine, Order, Resolution};
use restate_sdk::prelude::*;
use uuid::Uuid;

/// Records claim `claim` as `open`.
pub async fn open_claim(
    saga: &mut Saga<'_, '_>,
    order: Order,
    claim: Claim,
) -> Result<Order, TerminalError> {
    saga.commit(
        &order,
        &["order.claim_opened"],
        Some("claim_opened"),
        move |o, _| o.open_claim(claim),
    )
    .await
}

/// The parcel of claim `id` arrived; nothing is restocked.
pub async fn receive_claim(
    saga: &mut Saga<'_, '_>,
    order: Order,
    id: Uuid,
) -> Result<Order, TerminalError> {
    saga.commit(&order, &["order.claim_received"], None, move |o, at| {
        o.record_claim_received(id, at)
    })
    .await
}

/// Closes claim `id` as `status` (`rejected` or `expired`).
pub async fn close_claim(
    saga: &mut Saga<'_, '_>,
    order: Order,
    id: Uuid,
    status: ClaimStatus,
) -> Result<Order, TerminalError> {
    let (topics, template): (&'static [&'static str], _) = match status {
        ClaimStatus::Expired => (&["order.claim_expired"], None),
        _ => (&["order.claim_rejected"], Some("claim_rejected")),
    };
    saga.commit(&order, topics, template, move |o, at| {
        o.close_claim(id, status, at)
    })
    .await
}

/// Runs `resolve_claim` for claim `id` as `resolution`, shipping `replacement`
/// (per claimed item). A refusal before the point of no return is undone and
/// comes back as `Ok(Err(..))`, the claim as it was.
pub async fn resolve_claim(
    saga: &mut Saga<'_, '_>,
    order: Order,
    id: Uuid,
    resolution: Resolution,
    replacement: Vec<(i32, NewLine)>,
) -> Step<Order> {
    saga.begin_with(&order);
    let lines: Vec<NewLine> = replacement.iter().map(|(_, l)| l.clone()).collect();

    // 1. reserve_stock, 2. commit_stock, 3. create_fulfillment
    let reservation = match reserve(saga, &order, &stock_lines(&lines)).await? {
        Ok(r) => r,
        Err(refused) => {
            compensate(saga).await?;
            return Ok(Err(refused));
        }
    };
    let parcel = match commit_and_ship(saga, &order, reservation, &lines).await? {
        Ok(parcel) => parcel,
        Err(refused) => {
            compensate(saga).await?;
            return Ok(Err(refused));
        }
    };
    saga.drop_compensations();

    // 4. refund_payment of the units' share, outstanding first.
    let (back, clears) = match resolution.refunds() {
        true => {
            let plan = order.plan_claim(id);
            let plan = plan.map_err(|e| TerminalError::new(e.to_string()))?;
            let back = plan
                .amount()
                .map_err(|e| TerminalError::new(e.to_string()))?;
            (back, back.min(order.outstanding_amount))
        }
        false => (Money::ZERO, Money::ZERO),
    };
    let undone = refund(
        saga,
        &order,
        back.checked_sub(clears).unwrap_or(Money::ZERO),
    )
    .await?;

    // 5. update_read_model
    let refunds = refunds_made(&undone);
    let refunded = Money::sum(refunds.iter().map(|r| r.amount)).unwrap_or(Money::ZERO);
    let (topics, notify): (&'static [&'static str], _) = match refunds.is_empty() {
        true => (&["order.claim_resolved"], vec!["claim_resolved"]),
        false => (
            &["order.claim_resolved", "order.refunded"],
            vec!["claim_resolved", "refund_issued"],
        ),
    };
    let refund_amount = resolution.refunds().then_some(refunded);
    let refused = undone.iter().any(|u| matches!(u, Undone::Refused(..)));
    let order = saga
        .commit(&order, topics, notify, move |o, at| {
            o.clear_owed(clears, at);
            apply(o, &undone, at)?;
            o.record_claim_resolved(id, resolution, refund_amount, &replacement, parcel, at)?;
            if refused {
                o.attend(id);
            }
            Ok(())
        })
        .await?;
    Ok(Ok(order))
}
