//! `billing init --cluster <name>`: what an operator applies to bootstrap one cluster's Flux on
//! the many-cluster layout: the tenants GitRepository and a root Kustomization with `path:
//! ./clusters/<name>`, from `flux/clusters/cluster-sync.yaml` with the name (and the remote's
//! URL, when one is configured) filled in. Same least privilege as `flux/`: the root impersonates
//! `tenants-root`.

/// The template shipped in `flux/`, so the printed manifests and the documented ones agree.
const TEMPLATE: &str = include_str!("../../flux/clusters/cluster-sync.yaml");

/// The placeholder URL in the template.
const EXAMPLE_URL: &str = "ssh://git@git.example.com/iotistic/tenants.git";

/// The manifests for `cluster`, reading the repository at `url` (the template's placeholder
/// when None: a path remote is of no use to a cluster).
pub fn cluster_sync(cluster: &str, url: Option<&str>) -> String {
    let text = TEMPLATE.replace("${CLUSTER_NAME}", cluster);
    match url {
        Some(url) => text.replace(EXAMPLE_URL, url),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_cluster_name_and_url_are_filled_in() {
        let text = super::cluster_sync("eu-1", Some("https://git.example.org/t.git"));
        assert!(text.contains("path: ./clusters/eu-1\n"));
        assert!(text.contains("!/clusters/eu-1/\n"));
        assert!(text.contains("url: https://git.example.org/t.git\n"));
        assert!(!text.contains("${"));
    }
}
