//! The clusters page: the catalogue as `billing cluster list` shows it (name, region, state,
//! capacity, allocated, tenants), read from the database at each request.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use minijinja::context;
use serde::Serialize;

use super::pages::page;
use super::AdminPage;
use crate::app::SharedApp;
use crate::db::clusters;
use crate::quantity::{Cpu, Memory};

/// One row, quantities written as Kubernetes writes them.
#[derive(Serialize)]
struct Row {
    name: String,
    region: String,
    state: &'static str,
    cpu: String,
    memory: String,
    cpu_allocated: String,
    memory_allocated: String,
    tenants: i64,
}

fn row(c: &clusters::Cluster) -> Row {
    let n = |v: i64| u64::try_from(v).unwrap_or(0);
    Row {
        name: c.name.clone(),
        region: c.region.clone(),
        state: c.state.as_str(),
        cpu: Cpu(n(c.cpu_millis)).to_string(),
        memory: Memory(n(c.memory_bytes)).to_string(),
        cpu_allocated: Cpu(n(c.allocated_cpu_millis)).to_string(),
        memory_allocated: Memory(n(c.allocated_memory_bytes)).to_string(),
        tenants: c.tenants,
    }
}

pub async fn list(State(app): State<SharedApp>, admin: AdminPage) -> Response {
    match clusters::list(&app.db.pool).await {
        Ok(all) => {
            let clusters: Vec<Row> = all.iter().map(row).collect();
            page(
                StatusCode::OK,
                "clusters.html",
                context! { csrf_token => admin.csrf_token(), clusters },
            )
        }
        Err(err) => {
            tracing::error!(error = %err, "admin page: listing clusters failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "listing clusters failed; see the log",
            )
                .into_response()
        }
    }
}
