//! Fixtures: a store in a temporary directory and valid sample rows.

use std::net::Ipv4Addr;

use banger_api::{Image, Kernel, OpState, Operation, Vm, VmState};
use banger_store::Store;
use tempfile::TempDir;

/// A store on disk; keep the `TempDir` alive as long as the store.
pub fn temp_store() -> (TempDir, Store) {
    let dir = tempfile::tempdir().expect("create temp dir");
    let store = Store::open(dir.path().join("state/banger.db")).expect("open store");
    (dir, store)
}

/// A store holding the image returned by [`image`]`("img")`.
pub fn store_with_image() -> (TempDir, Store, Image) {
    let (dir, store) = temp_store();
    let img = image("img");
    store.insert_image(&img).expect("insert image");
    (dir, store, img)
}

pub fn image(name: &str) -> Image {
    Image {
        id: format!("img-{name}"),
        name: name.to_string(),
        rootfs_path: format!("/var/lib/banger/images/{name}/rootfs.ext4"),
        kernel_path: format!("/var/lib/banger/images/{name}/vmlinux"),
        initrd_path: None,
        size_bytes: 2 << 30,
        source: format!("register:/tmp/{name}"),
        created_at: 1_700_000_000_000,
        seed: None,
        work_seed_path: None,
    }
}

/// A VM on `image` whose address and MAC derive from `n`.
pub fn vm(name: &str, n: u8, image: &Image) -> Vm {
    Vm {
        id: format!("vm-{name}"),
        name: name.to_string(),
        state: VmState::Created,
        image_id: image.id.clone(),
        image_name: image.name.clone(),
        vcpus: 2,
        memory_mib: 1024,
        // Above u32::MAX, to check that the full u64 survives.
        disk_bytes: 8 << 30,
        guest_ip: Ipv4Addr::new(172, 16, 0, n),
        guest_mac: format!("06:00:ac:10:00:{n:02x}"),
        created_at: 1_700_000_000_000,
        updated_at: 1_700_000_000_000,
        started_at: None,
        last_error: None,
        work_disk_bytes: 8 << 30,
    }
}

pub fn kernel(name: &str) -> Kernel {
    Kernel {
        id: format!("k-{name}"),
        name: name.to_string(),
        version: Some("6.1.100".to_string()),
        path: format!("/var/lib/banger/kernels/{name}/vmlinux"),
        sha256: "ab".repeat(32),
        created_at: 1_700_000_000_000,
        size_bytes: 0,
        source: format!("register:/tmp/{name}"),
    }
}

pub fn operation(id: &str, state: OpState, updated_at: i64) -> Operation {
    Operation {
        id: id.to_string(),
        kind: "vm.create".to_string(),
        subject: format!("vm-for-{id}"),
        state,
        stage: "copying root disk".to_string(),
        step: 1,
        steps: 4,
        error: None,
        created_at: updated_at - 10,
        updated_at,
    }
}
