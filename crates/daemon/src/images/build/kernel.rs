//! `kernel.build`: banger's microVM guest kernel, built from Debian's
//! `linux-source` with the fragment kept in the repository
//! ([`banger_imagemgr::MICROVM_FRAGMENT`]; the steps are
//! `banger_imagemgr::build_kernel`'s), cached under
//! `<state>/cache/kernel/<version>-<hash>/` and registered as a kernel
//! (default name [`MICROVM_KERNEL`]), which `image.build` then boots by
//! default.
//!
//! It is an operation of the image service (`operation.watch` follows it):
//! the build runs unlocked on the blocking pool; only the registration goes
//! through `KernelService`'s publication lock.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use banger_api::rpc::KernelBuildParams;
use banger_api::{Operation, validate};
use banger_imagemgr::{KbuildError, KernelBuildRequest, KernelSource};

use crate::common::Persist;
use crate::common::blocking;
use crate::common::error::DaemonError;
use crate::images::ImageError;
use crate::images::KernelService;
use crate::images::service::ImageService;

/// The name `kernel.build` registers by default, and the kernel
/// `image.build` uses when it exists.
pub const MICROVM_KERNEL: &str = "microvm";

const STEPS: u32 = 2;

impl From<KbuildError> for ImageError {
    fn from(e: KbuildError) -> Self {
        match e {
            KbuildError::NoSource(_) | KbuildError::BadFragment { .. } => {
                ImageError::Invalid(e.to_string())
            }
            e => ImageError::Internal(e.to_string()),
        }
    }
}

impl ImageService {
    fn kernel_cache_dir(&self) -> PathBuf {
        self.layout.state_dir.join("cache").join("kernel")
    }

    /// `kernel.build`: check the name and the source, then build (or take
    /// the cached build) and register it on a task. Returns the operation.
    pub fn build_kernel(
        self: &Arc<Self>,
        kernels: Arc<KernelService>,
        p: KernelBuildParams,
    ) -> Result<Operation, ImageError> {
        let name = p.name.unwrap_or_else(|| MICROVM_KERNEL.to_string());
        validate::image_name(&name)?;
        kernels.check_free(&name)?;
        let status = std::fs::read_to_string(banger_imagemgr::DPKG_STATUS).unwrap_or_default();
        let source = KernelSource::find(
            std::path::Path::new(banger_imagemgr::DEBIAN_SOURCE_DIR),
            &status,
        )?;
        let op = self
            .ops
            .start("kernel.build", name.clone(), STEPS, Persist::AtStartAndEnd);
        let this = Arc::clone(self);
        let op_id = op.id.clone();
        tokio::spawn(async move {
            let t = Instant::now();
            let result = this
                .build_and_register(&op_id, &kernels, &name, source, p.no_cache)
                .await;
            match &result {
                Ok(how) => {
                    tracing::info!(op = %op_id, kernel = %name, how = %how, secs = t.elapsed().as_secs_f64(), "kernel built")
                }
                Err(e) => tracing::warn!(op = %op_id, error = %e, "kernel.build failed"),
            }
            let result = result
                .map(|how| format!("done ({how}, {:.0} s)", t.elapsed().as_secs_f64()))
                .map_err(DaemonError::from);
            this.ops.finish(&op_id, result.as_ref().map(String::clone));
        });
        Ok(op)
    }

    async fn build_and_register(
        self: &Arc<Self>,
        op_id: &str,
        kernels: &KernelService,
        name: &str,
        source: KernelSource,
        no_cache: bool,
    ) -> Result<String, ImageError> {
        let cache = self.kernel_cache_dir();
        let key = source.cache_key(banger_imagemgr::MICROVM_FRAGMENT);
        // Leaf lock: two builds of one key never write the same entry.
        let _lock = self.blob_locks.lock(&format!("kernel-{key}")).await;
        self.stage(
            op_id,
            1,
            &format!(
                "kernel {} ({}), cache key {key}",
                source.package, source.version
            ),
        );
        let this = Arc::clone(self);
        let id = op_id.to_string();
        let src = source.clone();
        let built = blocking(move || -> Result<_, ImageError> {
            let req = KernelBuildRequest {
                source: &src,
                fragment: banger_imagemgr::MICROVM_FRAGMENT,
                cache: &cache,
                jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
                no_cache,
                tools: Default::default(),
            };
            Ok(banger_imagemgr::build_kernel(&req, &mut |what| {
                this.stage(&id, 1, &format!("building the kernel: {what}"))
            })?)
        })
        .await?;
        self.stage(op_id, 2, "registering");
        let origin = format!(
            "build:{} {} ({})",
            source.package,
            source.version,
            built.dir.display()
        );
        kernels
            .install(name, &built.bzimage, Some(built.release.clone()), origin)
            .await?;
        Ok(if built.cached {
            format!("{} from the build cache", built.release)
        } else {
            format!("{} built", built.release)
        })
    }
}
