//! Static files served under `/static/`, compiled into the binary: the
//! vendored htmx and its SSE extension (see `static/vendor/README.md`),
//! the stylesheet and the small dashboard script.

use std::sync::OnceLock;

/// One static file.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// The name under `/static/`.
    pub name: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
}

/// Every static file.
pub const ASSETS: &[Asset] = &[
    Asset {
        name: "htmx.min.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../static/vendor/htmx-2.0.11.min.js"),
    },
    Asset {
        name: "sse.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../static/vendor/htmx-ext-sse-2.2.4.js"),
    },
    Asset {
        name: "dashboard.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../static/dashboard.js"),
    },
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../static/style.css"),
    },
    Asset {
        name: "LICENSE-htmx.txt",
        content_type: "text/plain; charset=utf-8",
        bytes: include_bytes!("../static/vendor/LICENSE-htmx"),
    },
    Asset {
        name: "LICENSE-htmx-ext-sse.txt",
        content_type: "text/plain; charset=utf-8",
        bytes: include_bytes!("../static/vendor/LICENSE-htmx-ext-sse"),
    },
];

/// The static file called `name`.
pub fn asset(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

/// A short hash of every static file: pages link `?v=<version>` so a
/// browser never runs a stale script against a newer daemon.
pub fn version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        // FNV-1a: stable, dependency-free, plenty for cache busting.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for a in ASSETS {
            for b in a.bytes {
                h ^= u64::from(*b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        }
        format!("{:012x}", h & 0xffff_ffff_ffff)
    })
}
