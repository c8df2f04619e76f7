//! Human-readable tables for the API models. `--json` bypasses all of this
//! and prints the models themselves.

use banger_api::doctor::{Check, CheckStatus};
use banger_api::{
    ByteSize, DaemonStatus, Image, OpState, Operation, ProvisionRun, ProvisionState, UnixMillis,
    Vm, VmDetail, VmState, VmStats,
};
use comfy_table::{Cell, Color, Table};

use crate::output::{Term, age, colored, kv_table, long_duration, or_dash, table};

fn state_cell(term: Term, state: VmState) -> Cell {
    let color = match state {
        VmState::Running => Color::Green,
        VmState::Starting | VmState::Stopping => Color::Yellow,
        VmState::Error => Color::Red,
        VmState::Created | VmState::Stopped => Color::Reset,
    };
    colored(term, state, color)
}

fn op_state_cell(term: Term, state: OpState) -> Cell {
    let color = match state {
        OpState::Running => Color::Yellow,
        OpState::Succeeded => Color::Green,
        OpState::Failed => Color::Red,
    };
    colored(term, state.as_str(), color)
}

fn mib(n: u32) -> String {
    ByteSize::mib(u64::from(n)).to_string()
}

/// `vm list`: one row per VM.
pub fn vm_list(term: Term, now: UnixMillis, vms: &[Vm]) -> Table {
    let mut t = table(
        term,
        &[
            "NAME", "STATE", "IMAGE", "VCPUS", "MEMORY", "DISK", "IP", "CREATED",
        ],
    );
    for vm in vms {
        t.add_row(vec![
            Cell::new(&vm.name),
            state_cell(term, vm.state),
            Cell::new(&vm.image_name),
            Cell::new(vm.vcpus),
            Cell::new(mib(vm.memory_mib)),
            Cell::new(ByteSize(vm.disk_bytes)),
            Cell::new(vm.guest_ip),
            Cell::new(age(now, vm.created_at)),
        ]);
    }
    t
}

fn vm_rows(now: UnixMillis, vm: &Vm) -> Vec<(&'static str, String)> {
    let mut rows = vec![
        ("name", vm.name.clone()),
        ("id", vm.id.clone()),
        ("state", vm.state.to_string()),
        ("image", format!("{} ({})", vm.image_name, vm.image_id)),
        ("vcpus", vm.vcpus.to_string()),
        ("memory", mib(vm.memory_mib)),
        ("disk", ByteSize(vm.disk_bytes).to_string()),
        ("address", vm.guest_ip.to_string()),
        ("mac", vm.guest_mac.clone()),
        ("created", age(now, vm.created_at)),
    ];
    if let Some(started) = vm.started_at.filter(|_| vm.state.has_vmm()) {
        rows.push(("started", age(now, started)));
    }
    if let Some(e) = &vm.last_error {
        rows.push(("last error", e.clone()));
    }
    rows
}

/// A VM as key/value lines (after `vm create` and `vm set`).
pub fn vm(term: Term, now: UnixMillis, vm: &Vm) -> Table {
    kv_table(term, vm_rows(now, vm))
}

/// `vm show`.
pub fn vm_detail(term: Term, now: UnixMillis, d: &VmDetail) -> Table {
    let mut rows = vm_rows(now, &d.vm);
    if let Some(rt) = &d.runtime {
        rows.push(("vmm pid", rt.pid.to_string()));
        rows.push(("api socket", rt.api_socket.clone()));
        rows.push(("vsock socket", or_dash(rt.vsock_socket.as_ref())));
    }
    rows.push(("directory", d.paths.dir.clone()));
    rows.push(("root disk", d.paths.root_disk.clone()));
    rows.push((
        "work disk",
        match &d.paths.work_disk {
            Some(p) => format!("{p} ({})", ByteSize(d.paths.work_disk_bytes)),
            None if d.vm.work_disk_bytes > 0 => {
                format!("{} (made at first start)", ByteSize(d.vm.work_disk_bytes))
            }
            None => "-".into(),
        },
    ));
    rows.push(("console log", d.paths.console_log.clone()));
    rows.push(("vmm log", d.paths.vmm_log.clone()));
    for f in &d.forwards {
        rows.push(("forward", forward_line(f)));
    }
    if !d.provision.is_empty() {
        rows.push(("provision", provision_text(&d.provision)));
    }
    kv_table(term, rows)
}

/// `127.0.0.1:8080 -> port 80`, and why it is not listening if it is not.
fn forward_line(f: &banger_api::forward::PortForward) -> String {
    let mut line = format!("{} -> port {}", f.host_endpoint(), f.guest_port);
    if !f.listening {
        line.push_str(&format!(
            " (not listening: {})",
            f.error.as_deref().unwrap_or("closed")
        ));
    }
    line
}

/// The forwards table of `vm ports`.
pub fn forwards(term: Term, forwards: &[banger_api::forward::PortForward]) -> Table {
    let mut t = table(term, &["FORWARD", "TO", "STATE"]);
    for f in forwards {
        let state = match (&f.error, f.listening) {
            (_, true) => "listening".to_string(),
            (Some(e), false) => format!("not listening: {e}"),
            (None, false) => "not listening".to_string(),
        };
        t.add_row(vec![
            f.host_endpoint(),
            format!("{}.vm:{}", f.vm, f.guest_port),
            state,
        ]);
    }
    t
}

/// One line per provisioning script: `setup.sh: failed (exit 3, 2.1s)`.
pub fn provision_text(runs: &[ProvisionRun]) -> String {
    let lines: Vec<String> = runs
        .iter()
        .map(|r| {
            let took = match (r.started_at, r.finished_at) {
                (Some(s), Some(f)) => format!(", {:.1}s", (f - s).max(0) as f64 / 1000.0),
                _ => String::new(),
            };
            let detail = match (r.state, r.exit_code) {
                (ProvisionState::Ok | ProvisionState::Failed, Some(c)) => {
                    format!(" (exit {c}{took})")
                }
                (ProvisionState::Failed, None) => format!(" (could not run{took})"),
                _ => String::new(),
            };
            format!("{}: {}{detail}", r.script, r.state.as_str())
        })
        .collect();
    lines.join("\n")
}

/// `vm stats`.
pub fn vm_stats(term: Term, s: &VmStats) -> Table {
    kv_table(
        term,
        vec![
            ("name", s.name.clone()),
            ("state", s.state.to_string()),
            ("vmm pid", or_dash(s.pid)),
            ("uptime", long_duration(s.uptime_secs)),
            ("cpu", or_dash(s.cpu_percent.map(|p| format!("{p:.1}%")))),
            ("cpu time", format!("{:.1}s", s.cpu_time_ms as f64 / 1000.0)),
            ("memory (rss)", ByteSize(s.rss_bytes).to_string()),
            (
                "disk allocated",
                ByteSize(s.disk_allocated_bytes).to_string(),
            ),
        ],
    )
}

/// `image list`.
pub fn image_list(term: Term, now: UnixMillis, images: &[Image]) -> Table {
    let mut t = table(term, &["NAME", "ID", "SIZE", "SOURCE", "CREATED"]);
    for i in images {
        t.add_row(vec![
            Cell::new(&i.name),
            Cell::new(&i.id),
            Cell::new(ByteSize(i.size_bytes)),
            Cell::new(&i.source),
            Cell::new(age(now, i.created_at)),
        ]);
    }
    t
}

/// `image show` and `image register`.
pub fn image(term: Term, now: UnixMillis, i: &Image) -> Table {
    kv_table(
        term,
        vec![
            ("name", i.name.clone()),
            ("id", i.id.clone()),
            ("size", ByteSize(i.size_bytes).to_string()),
            ("source", i.source.clone()),
            ("rootfs", i.rootfs_path.clone()),
            ("kernel", i.kernel_path.clone()),
            ("initrd", or_dash(i.initrd_path.as_ref())),
            ("created", age(now, i.created_at)),
            ("work seed", or_dash(i.work_seed_path.as_ref())),
            (
                "seed",
                match &i.seed {
                    Some(s) => format!(
                        "user {}, keys {}, agent {}, {}",
                        s.guest_user,
                        short_digest(&s.key_fingerprint),
                        s.agent_sha256.as_deref().map_or("none", short_digest),
                        age(now, s.seeded_at)
                    ),
                    None => "never (run `banger managed-seed refresh`)".into(),
                },
            ),
        ],
    )
}

/// `sha256:0123456789ab` (12 hex digits).
fn short_digest(d: &str) -> &str {
    d.get(..19).unwrap_or(d)
}

/// `managed-seed refresh`.
pub fn seed_refresh(term: Term, rows: &[banger_api::SeedRefresh]) -> Table {
    let mut t = table(term, &["IMAGE", "OUTCOME", "DETAIL"]);
    for r in rows {
        t.add_row(vec![
            Cell::new(&r.image),
            Cell::new(&r.outcome),
            Cell::new(&r.detail),
        ]);
    }
    t
}

/// `operation list`.
pub fn op_list(term: Term, now: UnixMillis, ops: &[Operation]) -> Table {
    let mut t = table(
        term,
        &["ID", "KIND", "SUBJECT", "STATE", "STEP", "STAGE", "UPDATED"],
    );
    for op in ops {
        t.add_row(vec![
            Cell::new(&op.id),
            Cell::new(&op.kind),
            Cell::new(&op.subject),
            op_state_cell(term, op.state),
            Cell::new(format!("{}/{}", op.step, op.steps)),
            Cell::new(&op.stage),
            Cell::new(age(now, op.updated_at)),
        ]);
    }
    t
}

/// `operation show` and `operation watch`.
pub fn op(term: Term, now: UnixMillis, op: &Operation) -> Table {
    let mut rows = vec![
        ("id", op.id.clone()),
        ("kind", op.kind.clone()),
        ("subject", op.subject.clone()),
        ("state", op.state.as_str().to_string()),
        ("step", format!("{}/{}", op.step, op.steps)),
        ("stage", op.stage.clone()),
        ("started", age(now, op.created_at)),
        ("updated", age(now, op.updated_at)),
    ];
    if let Some(e) = &op.error {
        rows.push(("error", e.message.clone()));
    }
    kv_table(term, rows)
}

/// `status`.
pub fn status(term: Term, s: &DaemonStatus, socket: &str) -> Table {
    kv_table(
        term,
        vec![
            ("daemon", format!("bangerd {} (pid {})", s.version, s.pid)),
            ("cli", format!("banger {}", banger_api::BANGER_VERSION)),
            ("uptime", long_duration(s.uptime_secs)),
            ("socket", socket.to_string()),
            ("state dir", s.state_dir.clone()),
            ("runtime dir", s.runtime_dir.clone()),
            ("firecracker", s.firecracker_bin.clone()),
            (
                "vms",
                format!("{} ({} running)", s.vms_total, s.vms_running),
            ),
        ],
    )
}

/// `doctor`: one row per check, the hint under the detail.
pub fn doctor(term: Term, checks: &[Check]) -> Table {
    let mut t = table(term, &["STATUS", "CHECK", "DETAIL"]);
    for c in checks {
        let (label, color) = match c.status {
            CheckStatus::Ok => ("ok", Color::Green),
            CheckStatus::Warn => ("warn", Color::Yellow),
            CheckStatus::Fail => ("FAIL", Color::Red),
        };
        let detail = match &c.hint {
            Some(h) => format!("{}\nhint: {h}", c.detail),
            None => c.detail.clone(),
        };
        t.add_row(vec![
            colored(term, label, color),
            Cell::new(&c.name),
            Cell::new(detail),
        ]);
    }
    t
}
