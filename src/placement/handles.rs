//! What placing tenants takes (the pool, the renderer a footprint comes from, the default
//! region, the placement worker's waker), the footprint of a tenant, and the region a signup
//! is placed in.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::db::{clusters, Db};
use crate::plans::Catalogue;
use crate::render::footprint::{self, Footprint};
use crate::render::{RenderSettings, Renderer, SealedValues, TenantSpec};

#[derive(Clone)]
pub struct PlacementHandles {
    pub db: Db,
    pub renderer: Arc<Renderer>,
    pub render_settings: Arc<RenderSettings>,
    pub plans: Arc<Catalogue>,
    /// `DEFAULT_REGION`: where a signup without `region` goes.
    pub default_region: Option<String>,
    /// Woken when room may have appeared in this process (a tenant deleted).
    pub wake: Arc<Notify>,
    /// The deploy worker's: a placed tenant's held change is pending again.
    pub worker_wake: Arc<Notify>,
    /// How often the placement worker looks for room (other processes add clusters too).
    pub interval: std::time::Duration,
    /// Footprints by (plan, subscription status): the requests of a stack depend on those and
    /// the templates only (fixed for the process), never on the customer's own text.
    footprints: Arc<Mutex<HashMap<(String, String), Footprint>>>,
}

/// Why a tenant cannot be placed as asked.
#[derive(Debug, thiserror::Error)]
pub enum PlacementError {
    #[error("unknown region {region:?}: the known regions are {}", .known.join(", "))]
    UnknownRegion { region: String, known: Vec<String> },
    #[error("region is required (no DEFAULT_REGION is set): the known regions are {}", .known.join(", "))]
    MissingRegion { known: Vec<String> },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl PlacementHandles {
    pub fn new(
        db: Db,
        renderer: Arc<Renderer>,
        render_settings: Arc<RenderSettings>,
        plans: Arc<Catalogue>,
        default_region: Option<String>,
        worker_wake: Arc<Notify>,
        interval: std::time::Duration,
    ) -> Self {
        PlacementHandles {
            db,
            renderer,
            render_settings,
            plans,
            default_region: default_region.filter(|r| !r.trim().is_empty()),
            wake: Arc::new(Notify::new()),
            worker_wake,
            interval,
            footprints: Arc::default(),
        }
    }

    /// The region a new tenant goes to: None when the catalogue is empty (no placement at all,
    /// as before clusters existed); else `requested` or `DEFAULT_REGION`, which must be a
    /// region of the catalogue.
    pub async fn region_for(
        &self,
        requested: Option<&str>,
    ) -> Result<Option<String>, PlacementError> {
        if !clusters::any(&self.db.pool).await? {
            return Ok(None);
        }
        let known = clusters::regions(&self.db.pool).await?;
        let region = match requested.or(self.default_region.as_deref()) {
            Some(region) => region,
            None => return Err(PlacementError::MissingRegion { known }),
        };
        if !known.iter().any(|k| k == region) {
            return Err(PlacementError::UnknownRegion {
                region: region.to_string(),
                known,
            });
        }
        Ok(Some(region.to_string()))
    }

    /// What the tenant's stack, rendered with the current templates and its plan, asks the
    /// scheduler for.
    pub async fn footprint(
        &self,
        spec: &TenantSpec,
        sealed: &SealedValues,
    ) -> anyhow::Result<Footprint> {
        let key = (spec.plan.clone(), spec.subscription_status.clone());
        if let Some(known) = self.cached(&key) {
            return Ok(known);
        }
        let handles = self.clone();
        let (spec, sealed) = (spec.clone(), sealed.clone());
        let need = crate::pool::COMPUTE
            .run(move || -> anyhow::Result<Footprint> {
                let plan = handles
                    .plans
                    .get(&spec.plan)
                    .ok_or_else(|| anyhow::anyhow!("unknown plan {:?}", spec.plan))?;
                let rendered =
                    handles
                        .renderer
                        .render(&spec, plan, &handles.render_settings, &sealed)?;
                Ok(footprint::footprint(&rendered.files)?)
            })
            .await??;
        if let Ok(mut cache) = self.footprints.lock() {
            cache.insert(key, need);
        }
        Ok(need)
    }

    fn cached(&self, key: &(String, String)) -> Option<Footprint> {
        self.footprints.lock().ok()?.get(key).copied()
    }
}
