//! Which tenants are behind: their render lock in Git (`render.json`) records other templates
//! or other inputs (the plan file's entry, the settings, the tenant's data) than a render now
//! would use, so a redeploy or a rollout would change their files.

use super::DeployHandles;

/// For each id, whether the tenant is behind. A tenant without a lock on main (not committed
/// yet, or deleted) is not: its next commit renders with what is loaded now.
pub async fn behind(app: &DeployHandles, ids: &[String]) -> anyhow::Result<Vec<bool>> {
    let paths: Vec<String> = ids
        .iter()
        .map(|id| crate::render::render_lock_path(id))
        .collect();
    let locks = app
        .gitops
        .run(move |repo| anyhow::Ok(repo.read_many(&paths)?))
        .await?;
    let mut out = Vec::with_capacity(ids.len());
    for (id, lock) in ids.iter().zip(locks) {
        let Some(lock) = lock.and_then(|b| crate::render::RenderLock::from_bytes(&b)) else {
            out.push(false);
            continue;
        };
        let (spec, sealed) = super::load_spec(app, id).await?;
        // A plan the plan file no longer has cannot be rendered now: behind by definition.
        let current = app.plans.get(&spec.plan).is_some_and(|plan| {
            app.renderer
                .is_current(&spec, plan, &app.render_settings, &sealed, &lock)
        });
        out.push(!current);
    }
    Ok(out)
}
