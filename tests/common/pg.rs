//! Throwaway PostgreSQL databases next to the one TEST_DATABASE_URL names, dropped with the
//! server that used them (a CI run used to leave dozens of `billing_t_*` behind).

use sqlx::{AnyConnection, AnyPool, Connection};

pub struct TempDatabase {
    admin_url: String,
    name: String,
    /// The new database's URL.
    pub url: String,
}

impl TempDatabase {
    /// A new, empty database.
    pub async fn create(admin_url: &str) -> Self {
        use rand::Rng;
        sqlx::any::install_default_drivers();
        let admin = AnyPool::connect(admin_url)
            .await
            .expect("connect to TEST_DATABASE_URL");
        let mut rng = rand::thread_rng();
        let suffix: String = (0..10)
            .map(|_| (b'a' + rng.gen_range(0..26)) as char)
            .collect();
        let name = format!("billing_t_{suffix}");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .expect("create test database");
        admin.close().await;
        let (prefix, rest) = admin_url.rsplit_once('/').expect("database URL has a path");
        let query = rest
            .split_once('?')
            .map(|(_, q)| format!("?{q}"))
            .unwrap_or_default();
        TempDatabase {
            url: format!("{prefix}/{name}{query}"),
            admin_url: admin_url.to_string(),
            name,
        }
    }
}

impl Drop for TempDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs on the test's runtime, which cannot be blocked on: a thread of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut admin = AnyConnection::connect(&admin_url).await?;
                // FORCE (PostgreSQL 13+) ends what is still connected: pools the test left open.
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut admin)
                    .await?;
                admin.close().await?;
                anyhow::Ok(())
            })
        })
        .join();
        // Never a panic here: this may run while a failed test unwinds.
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop the test database {}: {e:#}", self.name),
            Err(_) => eprintln!("could not drop the test database {}", self.name),
        }
    }
}
