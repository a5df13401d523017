//! A PostgreSQL database of its own for each test.

use order_service::read_model;
use sqlx::PgPool;
use uuid::Uuid;

/// A migrated database of its own, dropped with the value.
pub struct Db {
    pub pool: PgPool,
    name: String,
    admin_url: String,
}

impl Db {
    pub async fn new() -> Db {
        let admin_url = std::env::var("TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!("order_rm_{}", Uuid::new_v4().simple());
        let admin = PgPool::connect(&admin_url)
            .await
            .expect("PostgreSQL at TEST_DATABASE_URL");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        let url = match admin_url.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{name}"),
            None => panic!("TEST_DATABASE_URL names no database: {admin_url}"),
        };
        let pool = read_model::connect(&url, 4).await.unwrap();
        read_model::migrate(&pool).await.unwrap();
        Db {
            pool,
            name,
            admin_url,
        }
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.pool).await.unwrap()
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let (name, url) = (self.name.clone(), self.admin_url.clone());
        // On a thread and runtime of its own, since the test's runtime is blocked
        // here; the pool is left alone (closing it needs that runtime): `FORCE` ends
        // its connections.
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(async move {
                if let Ok(admin) = PgPool::connect(&url).await {
                    let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    sqlx::query(&drop).execute(&admin).await.ok();
                }
            });
        })
        .join()
        .ok();
    }
}
