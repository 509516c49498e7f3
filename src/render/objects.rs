//! Rendered YAML read back: every document of a file parsed, and the few fields the checks
//! read (kind, name, namespace, images) taken out of each manifest. Shared by the checks and
//! by the skeleton cache that learns where those fields sit.

use serde::Deserialize;
use serde_norway::Value;

/// Splits a multi-document YAML file into parsed documents, skipping empty ones.
pub fn parse_documents(bytes: &[u8]) -> Result<Vec<Value>, serde_norway::Error> {
    let mut docs = Vec::new();
    for de in serde_norway::Deserializer::from_slice(bytes) {
        let value = Value::deserialize(de)?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

/// The parts of a manifest the checks read. Deserialising only these (everything else is
/// skipped by serde, not built into a tree) keeps the full YAML parse at a fraction of the
/// cost of a generic `Value`; the parse itself still covers every byte.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    api_version: Option<String>,
    kind: Option<String>,
    #[serde(default)]
    metadata: Metadata,
    spec: Option<WorkloadSpec>,
}

#[derive(Deserialize, Default)]
struct Metadata {
    name: Option<String>,
    namespace: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WorkloadSpec {
    template: Option<PodTemplate>,
    job_template: Option<JobTemplate>,
}

#[derive(Deserialize)]
struct JobTemplate {
    spec: Option<JobSpec>,
}

#[derive(Deserialize)]
struct JobSpec {
    template: Option<PodTemplate>,
}

#[derive(Deserialize)]
struct PodTemplate {
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
    image: Option<String>,
}

/// The fields of one manifest the checks read. `F` is the text, or (in a learnt skeleton)
/// where to find it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Object<F = String> {
    pub api_version: Option<F>,
    pub kind: Option<F>,
    pub name: Option<F>,
    pub namespace: Option<F>,
    /// Every container image of a pod-owning object (workloads and CronJob).
    pub images: Vec<Option<F>>,
}

impl<F> Object<F> {
    pub fn try_map<G, E>(self, mut f: impl FnMut(F) -> Result<G, E>) -> Result<Object<G>, E> {
        let mut field = |v: Option<F>| v.map(&mut f).transpose();
        Ok(Object {
            api_version: field(self.api_version)?,
            kind: field(self.kind)?,
            name: field(self.name)?,
            namespace: field(self.namespace)?,
            images: self
                .images
                .into_iter()
                .map(field)
                .collect::<Result<_, _>>()?,
        })
    }

    pub fn as_ref(&self) -> Object<&F> {
        Object {
            api_version: self.api_version.as_ref(),
            kind: self.kind.as_ref(),
            name: self.name.as_ref(),
            namespace: self.namespace.as_ref(),
            images: self.images.iter().map(Option::as_ref).collect(),
        }
    }
}

/// The checked fields of every manifest in a file (a bare `---` is an empty document).
pub(super) fn objects(bytes: &[u8]) -> Result<Vec<Object>, serde_norway::Error> {
    let mut docs = Vec::new();
    for de in serde_norway::Deserializer::from_slice(bytes) {
        if let Some(doc) = Option::<Manifest>::deserialize(de)? {
            docs.push(doc.into_object());
        }
    }
    Ok(docs)
}

impl Manifest {
    fn into_object(self) -> Object {
        let spec = self.spec;
        let pod = match self.kind.as_deref() {
            Some("CronJob") => spec.and_then(|s| s.job_template?.spec?.template),
            _ => spec.and_then(|s| s.template),
        }
        .and_then(|t| t.spec);
        let images = pod
            .into_iter()
            .flat_map(|p| p.containers.into_iter().chain(p.init_containers))
            .map(|c| c.image)
            .collect();
        Object {
            api_version: self.api_version,
            kind: self.kind,
            name: self.metadata.name,
            namespace: self.metadata.namespace,
            images,
        }
    }
}
