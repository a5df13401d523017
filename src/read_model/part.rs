//! One part of an order's single-statement write, shared by the projection and
//! the parts it is made of (history, outbox, returns), so that they need not reach
//! back into the projection.

use sqlx::query_builder::Separated;
use sqlx::{Postgres, QueryBuilder};

/// Pushes one part of the order's write, `, {name} AS ({insert} SELECT ... {tail})`:
/// the `rows`, each bound by `bind`, made only when the order's row was `written`
/// (a replay of an older version must not put its rows back). Nothing when there
/// are no rows.
pub(super) fn push_part<'q, T>(
    q: &mut QueryBuilder<'q, Postgres>,
    name: &str,
    insert: &str,
    rows: impl IntoIterator<Item = T>,
    bind: impl FnMut(Separated<'_, 'q, Postgres, &'static str>, T),
    tail: &str,
) {
    let mut rows = rows.into_iter().peekable();
    if rows.peek().is_none() {
        return;
    }
    q.push(format_args!(", {name} AS ({insert} SELECT * FROM ("));
    q.push_values(rows, bind);
    q.push(format_args!(
        ") AS v WHERE EXISTS (SELECT FROM written) {tail})"
    ));
}
