//! End-to-end: images through the `banger` CLI and a real `bangerd`:
//! export-bundle, pull of the bundle (the `image.pull` operation followed
//! through `operation.watch`), detached pulls seen through `operation show`.

use crate::util;

use banger_api::{Image, OpState, Operation};
use util::{Fixtures, TestDaemon};

fn sha(p: &str) -> String {
    banger_imagemgr::sha256_file(std::path::Path::new(p))
        .unwrap()
        .to_string()
}

#[test]
fn bundle_round_trip_through_the_cli() {
    let Some(fx) = Fixtures::new("bundle_round_trip_through_the_cli") else {
        return;
    };
    let d = TestDaemon::start(&[]);
    let orig = d.register_image(&fx, "base");
    let bundle = fx.dir.path().join("base.bundle.tar");
    let b = bundle.display().to_string();
    let out = d.cli_ok(&["image", "export-bundle", "base", &b]);
    assert!(out.contains("wrote") && out.contains(&b), "{out}");
    let again = d.cli(&["image", "export-bundle", "base", &b]);
    assert_eq!(again.status.code(), Some(2), "refuses to overwrite");

    // A name clash fails before anything happens.
    let clash = d.cli(&["image", "pull", &b]);
    assert!(!clash.status.success());

    let copy: Image = d.cli_json(&["image", "pull", &b, "--name", "copy"]);
    assert_eq!(copy.name, "copy");
    assert_eq!(sha(&copy.rootfs_path), sha(&orig.rootfs_path));
    assert_eq!(sha(&copy.kernel_path), sha(&orig.kernel_path));

    // Detached: the operation is visible through operation show / watch.
    let op: Operation = d.cli_json(&["image", "pull", &b, "--name", "copy2", "--detach"]);
    assert_eq!(op.kind, "image.pull");
    let watched: Operation = d.cli_json(&["operation", "watch", &op.id]);
    assert_eq!(watched.state, OpState::Succeeded, "{:?}", watched.error);
    let shown: Operation = d.cli_json(&["operation", "show", &op.id]);
    assert_eq!(shown.id, op.id);
    let images: Vec<Image> = d.cli_json(&["image", "list"]);
    assert_eq!(images.len(), 3);

    // A registry that does not answer: the operation fails with a reason
    // and the exit code says so; nothing is published.
    let port = banger_testsupport::free_port();
    let bad = d.cli(&[
        "image",
        "pull",
        &format!("127.0.0.1:{port}/x/y:1"),
        "--name",
        "nope",
    ]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("image.pull nope failed") && err.contains("manifest"),
        "{err}"
    );
    let images: Vec<Image> = d.cli_json(&["image", "list"]);
    assert_eq!(images.len(), 3);
}
