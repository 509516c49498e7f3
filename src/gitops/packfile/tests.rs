use git2::{ObjectType, Repository};
use proptest::prelude::*;

use super::*;

fn bare() -> (tempfile::TempDir, Repository) {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::init_bare(dir.path()).unwrap();
    (dir, repo)
}

/// Writes `objects` (kind, bytes, name) as one pack and reads each back through a fresh libgit2
/// handle: what Git reads is what was put.
fn round_trip(objects: &[(ObjectType, Vec<u8>, Option<&str>)], bulk: bool) -> PathBuf {
    let (dir, repo) = bare();
    let odb = repo.odb().unwrap();
    let pack = NewPack::new(&odb, bulk);
    let ids: Vec<Oid> = objects
        .iter()
        .map(|(kind, data, name)| pack.put(*kind, data, *name))
        .collect();
    let path = pack
        .write(dir.path(), true)
        .unwrap()
        .expect("objects were new");
    let other = Repository::open_bare(dir.path()).unwrap();
    let odb = other.odb().unwrap();
    for (id, (kind, data, _)) in ids.iter().zip(objects) {
        assert_eq!(
            *id,
            Oid::hash_object(*kind, data).unwrap(),
            "same id as libgit2"
        );
        let object = odb.read(*id).unwrap();
        assert_eq!(object.kind(), *kind);
        assert_eq!(object.data(), &data[..]);
    }
    // Keep the repository for the caller's Git checks.
    std::mem::forget(dir);
    path
}

/// `git verify-pack` and `git fsck` accept `pack` and the repository holding it.
fn git_accepts(pack: &Path) {
    let repo_dir = pack.ancestors().nth(3).expect("<repo>/objects/pack/<name>");
    let out = match std::process::Command::new("git")
        .arg("verify-pack")
        .arg("-v")
        .arg(pack.with_extension("idx"))
        .output()
    {
        Ok(out) => out,
        // Outside CI, libgit2 has read everything back already.
        Err(e) => {
            return crate::skip::skip_unless_ci("git verify-pack", format!("no git CLI: {e}"))
        }
    };
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    super::super::tests::assert_git_fsck(repo_dir);
}

fn manifest(tenant: usize) -> Vec<u8> {
    let mut text = String::new();
    for line in 0..120 {
        text.push_str(&format!(
            "  key{line}: \"value {line} of a long enough line\"\n"
        ));
        if line % 10 == 0 {
            text.push_str(&format!("  namespace: \"tenant-t{tenant:011}\"\n"));
        }
    }
    text.into_bytes()
}

#[test]
fn similar_blobs_become_deltas_that_git_reads_back() {
    let mut objects: Vec<(ObjectType, Vec<u8>, Option<&str>)> = (0..50)
        .map(|t| (ObjectType::Blob, manifest(t), Some("api.yaml")))
        .collect();
    // Unrelated content under the same name is stored whole, and a large object is stored raw.
    objects.push((
        ObjectType::Blob,
        b"nothing alike\n".repeat(3),
        Some("api.yaml"),
    ));
    objects.push((ObjectType::Blob, vec![7u8; STORE_WHOLE_BYTES + 5], None));
    objects.push((ObjectType::Blob, Vec::new(), Some("empty")));
    let raw: usize = objects.iter().map(|(_, d, _)| d.len()).sum();
    let pack = round_trip(&objects, true);
    let packed = std::fs::metadata(&pack).unwrap().len() as usize;
    assert!(
        packed < STORE_WHOLE_BYTES + (raw - STORE_WHOLE_BYTES) / 10,
        "deltas keep 50 similar manifests small: {packed} bytes for {raw}"
    );
    git_accepts(&pack);

    // A commit's pack stores large objects whole; one this large is hashed while written.
    objects.push((ObjectType::Blob, vec![9u8; HASH_BESIDE_BYTES], None));
    let plain = round_trip(&objects, false);
    assert!(std::fs::metadata(&plain).unwrap().len() as usize > HASH_BESIDE_BYTES + packed);
    git_accepts(&plain);
}

/// (bytes, file name) pairs as blobs for [`NewPack::put_blobs`].
fn blob_puts<'a>(objects: &'a [(Vec<u8>, &'a str)], new_path: bool) -> Vec<BlobPut<'a>> {
    objects
        .iter()
        .map(|(bytes, name)| BlobPut {
            bytes,
            name: Some(name),
            new_path,
        })
        .collect()
}

#[test]
fn blobs_encoded_on_every_core_are_laid_out_as_git_reads_them() {
    let (dir, repo) = bare();
    let odb = repo.odb().unwrap();
    // The store has the first manifest already: it must be neither written nor a delta base.
    odb.write(ObjectType::Blob, &manifest(0)).unwrap();
    let pack = NewPack::new(&odb, true);
    // 300 blobs (enough for two threads) under two names; every manifest comes twice.
    let objects: Vec<(Vec<u8>, &str)> = (0..300)
        .map(|t| (manifest(t % 150), ["api.yaml", "db.yaml"][t % 2]))
        .collect();
    let mut ids = pack.put_blobs(&blob_puts(&objects, false));
    // A second call: deltas against a base laid out by the first, and a name new here.
    let more: Vec<(Vec<u8>, &str)> = (150..290)
        .map(|t| (manifest(t), ["api.yaml", "new.yaml"][t % 2]))
        .collect();
    ids.extend(pack.put_blobs(&blob_puts(&more, true)));
    let path = pack.write(dir.path(), true).unwrap().expect("new blobs");
    let other = Repository::open_bare(dir.path()).unwrap();
    let other = other.odb().unwrap();
    for (id, (bytes, _)) in ids.iter().zip(objects.iter().chain(&more)) {
        assert_eq!(*id, Oid::hash_object(ObjectType::Blob, bytes).unwrap());
        assert_eq!(other.read(*id).unwrap().data(), &bytes[..]);
    }
    // A version-2 index: 1,072 header and trailer bytes, 28 per object.
    let idx = std::fs::metadata(path.with_extension("idx")).unwrap().len();
    assert_eq!((idx - 1072) / 28, 149 + 140, "each new manifest once");
    let raw: usize = objects[1..150]
        .iter()
        .chain(&more)
        .map(|(b, _)| b.len())
        .sum();
    let packed = std::fs::metadata(&path).unwrap().len() as usize;
    assert!(packed < raw / 10, "deltas: {packed} bytes for {raw}");
    git_accepts(&path);
}

#[test]
fn trees_and_commits_written_into_a_pack_make_a_history_git_accepts() {
    let (dir, repo) = bare();
    let odb = repo.odb().unwrap();
    let pack = NewPack::new(&odb, false);
    let blob = pack.put(ObjectType::Blob, b"hello\n", Some("a.txt"));
    let mut tree = b"100644 a.txt\0".to_vec();
    tree.extend_from_slice(blob.as_bytes());
    let tree = pack.put(ObjectType::Tree, &tree, None);
    let commit = format!(
        "tree {tree}\nauthor A <a@x> 1700000000 +0000\ncommitter A <a@x> 1700000000 +0000\n\nfirst\n"
    );
    let commit = pack.put(ObjectType::Commit, commit.as_bytes(), None);
    let path = pack.write(dir.path(), true).unwrap().unwrap();
    repo.reference("refs/heads/main", commit, true, "test")
        .unwrap();
    let found = repo.find_commit(commit).unwrap();
    assert_eq!(found.summary(), Some("first"));
    assert_eq!(found.tree().unwrap().len(), 1);
    git_accepts(&path);

    // A temporary file a killed writer left behind is cleaned up; the packs stay.
    let leftover = path.parent().unwrap().join(format!("{TMP_PREFIX}1_0"));
    std::fs::write(&leftover, b"half a pack").unwrap();
    remove_leftovers(dir.path(), std::time::Duration::from_secs(60)).unwrap();
    assert!(leftover.exists(), "too young: maybe a writer at work");
    remove_leftovers(dir.path(), std::time::Duration::ZERO).unwrap();
    assert!(!leftover.exists() && path.exists());

    // Objects the repository has are not written again.
    let again = NewPack::new(&odb, false);
    assert_eq!(again.put(ObjectType::Blob, b"hello\n", None), blob);
    assert!(again.is_empty());
    assert_eq!(again.write(dir.path(), true).unwrap(), None);
}

#[test]
fn delta_offsets_use_gits_varint() {
    // Values from gitformat-pack(5): each continuation byte adds one before shifting.
    assert_eq!(ofs_distance(0x7f), vec![0x7f]);
    assert_eq!(ofs_distance(0x80), vec![0x80, 0x00]);
    assert_eq!(ofs_distance(0x407f), vec![0xff, 0x7f]);
    assert_eq!(ofs_distance(0x4080), vec![0x80, 0x80, 0x00]);
}

fn lines() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            Just(b"  metadata:\n".to_vec()),
            Just(b"    name: \"same for everyone\"\n".to_vec()),
            Just(b"\n".to_vec()),
            prop::collection::vec(any::<u8>(), 0..300),
        ],
        0..40,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Whatever the base and the target, libgit2 rebuilds the target from the delta.
    #[test]
    fn deltas_rebuild_any_target(base in lines(), targets in prop::collection::vec(lines(), 1..4)) {
        let mut objects = vec![(ObjectType::Blob, base, Some("f"))];
        objects.extend(targets.into_iter().map(|t| (ObjectType::Blob, t, Some("f"))));
        objects.dedup_by(|a, b| a.1 == b.1);
        round_trip(&objects, true);
    }
}
