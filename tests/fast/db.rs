//! A PostgreSQL database of its own for each test.

use order_service::read_model;
use order_stack::postgres::ServerDatabase;
use sqlx::PgPool;
use uuid::Uuid;

/// A migrated database of its own, dropped with the value.
pub struct Db {
    pub pool: PgPool,
    database: ServerDatabase,
}

impl Db {
    pub async fn new() -> Db {
        let admin_dsn = std::env::var("TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!("order_rm_{}", Uuid::new_v4().simple());
        let database = ServerDatabase::create(&admin_dsn, &name).await.unwrap();
        let pool = read_model::connect(&database.dsn, 4).await.unwrap();
        read_model::migrate(&pool).await.unwrap();
        Db { pool, database }
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.pool).await.unwrap()
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        // The pool is left alone (closing it needs the test's runtime, blocked
        // here): `FORCE` ends its connections.
        self.database.drop_database_blocking();
    }
}
