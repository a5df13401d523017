//! The read model: what a commit writes, what a replay leaves alone, what a saga
//! adopts, and what operators do to the outbox.

use chrono::{DateTime, SubsecRound, Utc};
use order_service::domain::{NewOrder, Order, OrderStatus};
use order_service::read_model::{self, outbox, Author, ListFilter};
use serde_json::json;
use uuid::Uuid;

use crate::db::Db;

fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// A confirmed-to-be order of two mugs at version 1, numbered as the read model
/// numbers it.
pub async fn new_order(db: &Db) -> Order {
    let id = Uuid::new_v4();
    let new: NewOrder = serde_json::from_value(json!({
        "customer_id": Uuid::new_v4(),
        "currency": "USD",
        "items": [{"product_id": Uuid::new_v4(), "product_sku": "SKU-MUG", "product_name": "Mug",
                   "warehouse_id": Uuid::new_v4(), "quantity": 2, "unit_price": "12.50"}],
        "payment": {"method": "pm_card_visa"}
    }))
    .unwrap();
    let numbered = read_model::order_number(&db.pool, id, now()).await.unwrap();
    Order::create(
        id,
        numbered.number,
        &new,
        numbered.created_at,
        chrono::Duration::hours(1),
    )
}

const SYSTEM: Author<'static> = Author {
    actor: "system",
    reason: None,
};

/// Writes `order` with one event of `topic`, as a commit does.
pub async fn commit(db: &Db, order: &Order, before: Option<&Order>, topic: &str) -> bool {
    let changes = before.map(|b| order.changes_since(b)).unwrap_or_default();
    let event = order.event(topic);
    read_model::project(&db.pool, order, &[event], &[], (SYSTEM, &changes), &[])
        .await
        .unwrap()
}

#[tokio::test]
async fn a_commit_is_readable_at_once_and_its_replay_writes_nothing() {
    let db = Db::new().await;
    let order = new_order(&db).await;

    let first = commit(&db, &order, None, "order.created").await;
    let replay = commit(&db, &order, None, "order.created").await;

    assert!(first, "the first write writes");
    assert!(!replay, "a replay of the same version writes nothing");
    let read = read_model::get_order(&db.pool, order.id).await.unwrap();
    assert_eq!(read.as_ref(), Some(&order.view()));
    let by_number = read_model::get_order_by_number(&db.pool, &order.order_number)
        .await
        .unwrap();
    assert_eq!(by_number.map(|o| o.id), Some(order.id));
    assert_eq!(
        db.count("SELECT count(*) FROM outbox").await,
        1,
        "one event"
    );
}

#[tokio::test]
async fn an_older_version_never_overwrites_a_newer_one() {
    let db = Db::new().await;
    let v1 = new_order(&db).await;
    let mut v2 = v1.clone();
    v2.version += 1;
    v2.shipping_address = json!({"line1": "1 New Street", "city": "Lyon"});
    v2.transition(OrderStatus::Confirmed, None, "system", now())
        .unwrap();

    commit(&db, &v1, None, "order.created").await;
    commit(&db, &v2, Some(&v1), "order.confirmed").await;
    let late = commit(&db, &v1, None, "order.created").await;

    assert!(!late);
    let read = read_model::get_order(&db.pool, v1.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((read.version, read.status), (2, OrderStatus::Confirmed));
    let history = read_model::status_history(&db.pool, v1.id).await.unwrap();
    let history = format!("{history:?}").to_lowercase();
    assert!(history.contains("confirmed"), "{history}");
    let edits = read_model::edit_history(&db.pool, v1.id)
        .await
        .unwrap()
        .unwrap();
    assert!(
        edits
            .iter()
            .any(|e| format!("{e:?}").contains("1 New Street")),
        "{edits:?}"
    );
}

#[tokio::test]
async fn the_read_model_gives_back_the_whole_order_for_a_saga_to_adopt() {
    let db = Db::new().await;
    let mut order = new_order(&db).await;
    order.reservation_id = Some("res_1".into());
    order.payment_id = Some("pay_1".into());

    commit(&db, &order, None, "order.created").await;
    let adopted = read_model::order_state(&db.pool, order.id).await.unwrap();

    assert_eq!(adopted, Some((order.version, Some(order.clone()))));
    assert_eq!(
        read_model::order_state(&db.pool, Uuid::new_v4())
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn an_order_keeps_its_number_and_the_next_order_takes_the_next_one() {
    let db = Db::new().await;
    let at = now();
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());

    let first = read_model::order_number(&db.pool, a, at).await.unwrap();
    let order = Order::create(
        a,
        first.number.clone(),
        &serde_json::from_value(
            json!({"currency": "USD", "items": [{"product_id": Uuid::new_v4(),
            "product_sku": "S", "product_name": "S", "warehouse_id": Uuid::new_v4(),
            "quantity": 1, "unit_price": "1.00"}]}),
        )
        .unwrap(),
        first.created_at,
        chrono::Duration::hours(1),
    );
    commit(&db, &order, None, "order.created").await;
    let again = read_model::order_number(&db.pool, a, now()).await.unwrap();
    let next = read_model::order_number(&db.pool, b, at).await.unwrap();

    assert_eq!(again.number, first.number, "a replay finds its number");
    assert_eq!(again.created_at, first.created_at);
    let seq = |n: &str| n.rsplit('-').next().unwrap().parse::<u32>().unwrap();
    assert_eq!(seq(&next.number), seq(&first.number) + 1);
}

#[tokio::test]
async fn orders_are_listed_newest_first_page_by_page_and_filtered_by_status() {
    let db = Db::new().await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let mut order = new_order(&db).await;
        order.created_at += chrono::Duration::seconds(n);
        commit(&db, &order, None, "order.created").await;
        ids.push(order.id);
    }
    let filter = |after, status| ListFilter {
        customer_id: None,
        status,
        created_from: None,
        created_to: None,
        after,
        limit: 2,
    };

    let first = read_model::list_orders(&db.pool, &filter(None, None))
        .await
        .unwrap();
    let cursor = first.next_cursor.as_deref().map(read_model::Cursor::decode);
    let second = read_model::list_orders(&db.pool, &filter(cursor.flatten(), None))
        .await
        .unwrap();
    let confirmed = read_model::list_orders(&db.pool, &filter(None, Some(OrderStatus::Confirmed)))
        .await
        .unwrap();

    let listed: Vec<Uuid> = first
        .orders
        .iter()
        .chain(&second.orders)
        .map(|o| o.id)
        .collect();
    assert_eq!(listed, vec![ids[2], ids[1], ids[0]]);
    assert!(second.next_cursor.is_none());
    assert!(confirmed.orders.is_empty(), "none is confirmed");
}

#[tokio::test]
async fn an_operator_sends_a_refused_message_again_or_drops_it() {
    let db = Db::new().await;
    let (a, b) = (new_order(&db).await, new_order(&db).await);
    commit(&db, &a, None, "order.created").await;
    commit(&db, &b, None, "order.created").await;
    let mut tx = db.pool.begin().await.unwrap();
    let queues = outbox::claim(&mut tx, outbox::Kind::Event, 10)
        .await
        .unwrap();
    for queue in &queues {
        outbox::mark_refused(&mut tx, queue[0].id, "pubsub answered 400")
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    let refused = |backlog: Vec<outbox::Backlog>| {
        backlog
            .iter()
            .filter(|b| b.refused)
            .map(|b| b.count)
            .sum::<i64>()
    };
    assert_eq!(refused(outbox::backlog(&db.pool).await.unwrap()), 2);

    let requeued = outbox::requeue_refused(&db.pool, a.id).await.unwrap();
    let dropped = outbox::drop_refused(&db.pool, b.id, "not needed")
        .await
        .unwrap();

    assert_eq!((requeued, dropped), (1, 1));
    let mut tx = db.pool.begin().await.unwrap();
    let again = outbox::claim(&mut tx, outbox::Kind::Event, 10)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    let again: Vec<Uuid> = again.iter().map(|q| q[0].order_id).collect();
    assert_eq!(again, vec![a.id], "only the requeued one goes out again");
    assert_eq!(refused(outbox::backlog(&db.pool).await.unwrap()), 0);
    let listed = outbox::undelivered(&db.pool, now()).await.unwrap();
    let listed: Vec<Uuid> = listed.iter().map(|u| u.order_id).collect();
    assert_eq!(
        listed,
        vec![a.id],
        "the dropped one is no longer undelivered"
    );
}
