//! The kernels kadvisor supports are the kernels it is tested on: Debian's 6.1 and
//! 6.12 cloud kernels in the kernel matrix (scripts/kernel-matrix.sh) and the dev
//! host's 6.18. On an older kernel kadvisor refuses to start with one line naming the
//! running and the minimum version, rather than run programs nobody verified there.
use crate::bpf::KernelVersion;

/// The oldest kernel of the matrix.
pub const OLDEST_TESTED: KernelVersion = KernelVersion { major: 6, minor: 1 };

/// Replaces the running kernel's release in the check, so the refusal itself can be
/// tested on a supported kernel (tests/tests/cli.rs). Nothing else reads it.
pub const RELEASE_OVERRIDE_ENV: &str = "KADVISOR_TEST_KERNEL_RELEASE";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SupportedKernelError {
    #[error(
        "kernel {release} is older than {OLDEST_TESTED}, the oldest kernel kadvisor is tested on; refusing to start"
    )]
    TooOld { release: String },
    #[error("cannot tell the kernel version from the release {release:?}")]
    Unparsable { release: String },
    #[error("cannot read the kernel release from /proc/sys/kernel/osrelease: {0}")]
    Unreadable(String),
}

/// Checks a release string (`uname -r`).
pub fn check_release(release: &str) -> Result<KernelVersion, SupportedKernelError> {
    let release = release.trim();
    let version =
        KernelVersion::parse(release).ok_or_else(|| SupportedKernelError::Unparsable {
            release: release.to_owned(),
        })?;
    if version < OLDEST_TESTED {
        return Err(SupportedKernelError::TooOld {
            release: release.to_owned(),
        });
    }
    Ok(version)
}

/// Checks the running kernel (or the release in `RELEASE_OVERRIDE_ENV`).
pub fn check_running() -> Result<KernelVersion, SupportedKernelError> {
    let release = match std::env::var(RELEASE_OVERRIDE_ENV) {
        Ok(release) => release,
        Err(_) => std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_err(|e| SupportedKernelError::Unreadable(e.to_string()))?,
    };
    check_release(&release)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_matrix_kernels_and_newer_are_supported() {
        for release in [
            "6.1.0-41-cloud-amd64",
            "6.12.57+deb13-cloud-amd64",
            "6.18.0",
            "7.0.1",
        ] {
            assert!(check_release(release).is_ok(), "{release}");
        }
    }

    #[test]
    fn an_older_kernel_is_refused_naming_both_versions() {
        let e = check_release("5.15.0-91-generic\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "kernel 5.15.0-91-generic is older than 6.1, the oldest kernel kadvisor is tested on; refusing to start"
        );
        assert!(check_release("6.0.19").is_err());
    }

    #[test]
    fn garbage_is_an_error_not_a_pass() {
        assert!(matches!(
            check_release("garbage"),
            Err(SupportedKernelError::Unparsable { .. })
        ));
    }
}
