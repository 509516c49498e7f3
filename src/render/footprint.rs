//! A tenant's footprint: what its rendered stack asks the scheduler for. Every Deployment and
//! StatefulSet at its replica count and every CronJob once; each pod counts the larger of its
//! largest init container's request and the sum of its containers' requests (the scheduler's
//! own rule for a pod's effective request), CPU and memory separately.

use serde::Deserialize;

use crate::quantity;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Footprint {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
}

impl Footprint {
    fn add(self, other: Footprint) -> Footprint {
        Footprint {
            cpu_millis: self.cpu_millis + other.cpu_millis,
            memory_bytes: self.memory_bytes + other.memory_bytes,
        }
    }

    fn max(self, other: Footprint) -> Footprint {
        Footprint {
            cpu_millis: self.cpu_millis.max(other.cpu_millis),
            memory_bytes: self.memory_bytes.max(other.memory_bytes),
        }
    }

    fn times(self, n: u64) -> Footprint {
        Footprint {
            cpu_millis: self.cpu_millis * n,
            memory_bytes: self.memory_bytes * n,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FootprintError {
    #[error("{file}: not YAML: {source}")]
    Yaml {
        file: String,
        source: serde_norway::Error,
    },
    #[error("{file}: {kind}/{name}: {source}")]
    Quantity {
        file: String,
        kind: String,
        name: String,
        source: quantity::QuantityError,
    },
}

#[derive(Deserialize)]
struct Manifest {
    kind: Option<String>,
    #[serde(default)]
    metadata: Metadata,
    spec: Option<Spec>,
}

#[derive(Deserialize, Default)]
struct Metadata {
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    replicas: Option<u64>,
    template: Option<Template>,
    job_template: Option<Box<JobTemplate>>,
}

#[derive(Deserialize)]
struct JobTemplate {
    spec: Option<Box<Spec>>,
}

#[derive(Deserialize)]
struct Template {
    spec: Option<PodSpec>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodSpec {
    #[serde(default)]
    containers: Vec<Container>,
    #[serde(default)]
    init_containers: Vec<Container>,
}

#[derive(Deserialize)]
struct Container {
    #[serde(default)]
    resources: Resources,
}

#[derive(Deserialize, Default)]
struct Resources {
    #[serde(default)]
    requests: Requests,
}

#[derive(Deserialize, Default)]
struct Requests {
    cpu: Option<String>,
    memory: Option<String>,
}

/// The footprint of a tenant's rendered files (path -> bytes); files that are not YAML
/// manifests (the render lock) are skipped by name.
pub fn footprint<'a>(
    files: impl IntoIterator<Item = (&'a String, &'a Vec<u8>)>,
) -> Result<Footprint, FootprintError> {
    let mut total = Footprint::default();
    for (file, bytes) in files {
        if !(file.ends_with(".yaml") || file.ends_with(".yml")) {
            continue;
        }
        for de in serde_norway::Deserializer::from_slice(bytes) {
            let manifest =
                Option::<Manifest>::deserialize(de).map_err(|source| FootprintError::Yaml {
                    file: file.clone(),
                    source,
                })?;
            let Some(manifest) = manifest else { continue };
            total = total.add(workload(file, manifest)?);
        }
    }
    Ok(total)
}

fn workload(file: &str, manifest: Manifest) -> Result<Footprint, FootprintError> {
    let kind = manifest.kind.unwrap_or_default();
    let spec = match (kind.as_str(), manifest.spec) {
        ("Deployment" | "StatefulSet", Some(spec)) => spec,
        ("CronJob", Some(spec)) => match spec.job_template.and_then(|t| t.spec) {
            // A CronJob's pod runs once at a time (the templates forbid concurrency).
            Some(job) => Spec {
                replicas: Some(1),
                ..*job
            },
            None => return Ok(Footprint::default()),
        },
        _ => return Ok(Footprint::default()),
    };
    let Some(pod) = spec.template.and_then(|t| t.spec) else {
        return Ok(Footprint::default());
    };
    let request = |container: &Container| -> Result<Footprint, quantity::QuantityError> {
        let requests = &container.resources.requests;
        Ok(Footprint {
            cpu_millis: requests
                .cpu
                .as_deref()
                .map_or(Ok(0), quantity::cpu_millis)?,
            memory_bytes: requests.memory.as_deref().map_or(Ok(0), quantity::bytes)?,
        })
    };
    let per_pod = (|| {
        let mut sum = Footprint::default();
        for c in &pod.containers {
            sum = sum.add(request(c)?);
        }
        let mut init = Footprint::default();
        for c in &pod.init_containers {
            init = init.max(request(c)?);
        }
        Ok(sum.max(init))
    })()
    .map_err(|source| FootprintError::Quantity {
        file: file.to_string(),
        kind: kind.clone(),
        name: manifest.metadata.name.clone(),
        source,
    })?;
    Ok(per_pod.times(spec.replicas.unwrap_or(1)))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn files(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(p, y)| (p.to_string(), y.as_bytes().to_vec()))
            .collect()
    }

    const DEPLOYMENT: &str = "
apiVersion: apps/v1
kind: Deployment
metadata: {name: api}
spec:
  replicas: 3
  template:
    spec:
      initContainers:
        - {name: migrate, resources: {requests: {cpu: 900m, memory: 64Mi}}}
      containers:
        - {name: api, resources: {requests: {cpu: 250m, memory: 256Mi}}}
        - {name: sidecar, resources: {requests: {cpu: 50m}}}
---
apiVersion: v1
kind: Service
metadata: {name: api}
spec: {ports: [{port: 80}]}
";

    #[test]
    fn pods_count_the_larger_of_init_and_containers_times_replicas() {
        let f = footprint(&files(&[("t/api.yaml", DEPLOYMENT)])).unwrap();
        // CPU: init 900m beats 250m + 50m; memory: 256Mi beats 64Mi.
        assert_eq!(f.cpu_millis, 3 * 900);
        assert_eq!(f.memory_bytes, 3 * (256 << 20));
    }

    #[test]
    fn cron_jobs_count_once_and_other_kinds_and_files_not_at_all() {
        let cron = "
kind: CronJob
metadata: {name: backup}
spec:
  schedule: '0 2 * * *'
  jobTemplate:
    spec:
      template:
        spec:
          containers: [{name: dump, resources: {requests: {cpu: '0.1', memory: 128Mi}}}]
";
        let f = footprint(&files(&[
            ("t/backup.yaml", cron),
            ("t/render.json", "{\"not\": \"a manifest\"}"),
            (
                "t/quota.yaml",
                "kind: ResourceQuota\nspec: {hard: {cpu: '4'}}\n",
            ),
        ]))
        .unwrap();
        assert_eq!(
            f,
            Footprint {
                cpu_millis: 100,
                memory_bytes: 128 << 20
            }
        );
    }

    #[test]
    fn a_bad_quantity_names_the_file_and_object() {
        let bad = DEPLOYMENT.replace("250m", "lots");
        let err = footprint(&files(&[("t/api.yaml", &bad)])).unwrap_err();
        assert!(
            err.to_string().contains("t/api.yaml: Deployment/api"),
            "{err}"
        );
    }
}
