//! The web UI: a page at `/` with the host's cgroups as a tree and live charts of the
//! selected one, for a person who opens kadvisor in a browser (standalone cAdvisor's
//! use). Everything it loads is embedded in the binary (no external request, works
//! offline):
//!
//! | path | what |
//! |---|---|
//! | `/` | the page (`assets/index.html`) |
//! | `/ui/app.js`, `/ui/app.css` | the page's code and style |
//! | `/ui/uPlot.iife.min.js`, `/ui/uPlot.min.css` | uPlot, the charting library (npm, embedded by `build.rs`) |
//! | `/ui/licenses/uPlot.txt` | uPlot's licence (MIT) |
//! | `/ui/snapshot` | one collection's values as JSON (`snapshot`), polled every second |
//!
//! The snapshot is made from the structured samples of the same collection as
//! `/metrics` and holds only the latest values: the page keeps the history (10
//! minutes) and computes rates, so the server keeps nothing per viewer.
pub mod snapshot;

/// One embedded file.
pub struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

/// Every embedded file, by the path it is served at.
pub const ASSETS: [Asset; 6] = [
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("assets/index.html"),
    },
    Asset {
        path: "/ui/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("assets/app.js"),
    },
    Asset {
        path: "/ui/app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("assets/app.css"),
    },
    Asset {
        path: "/ui/uPlot.iife.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!(concat!(env!("OUT_DIR"), "/uplot/uPlot.iife.min.js")),
    },
    Asset {
        path: "/ui/uPlot.min.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!(concat!(env!("OUT_DIR"), "/uplot/uPlot.min.css")),
    },
    Asset {
        path: "/ui/licenses/uPlot.txt",
        content_type: "text/plain; charset=utf-8",
        body: include_bytes!(concat!(env!("OUT_DIR"), "/uplot/LICENSE")),
    },
];

/// The path of the JSON endpoint.
pub const SNAPSHOT_PATH: &str = "/ui/snapshot";

/// Only the page's own origin, for anything: the page loads nothing from elsewhere,
/// and a browser enforces it. uPlot sizes its elements through inline styles.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The embedded file served at `path`.
pub fn asset(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.path == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_loads_only_embedded_files() {
        let page = std::str::from_utf8(asset("/").unwrap().body).unwrap();
        // Scripts and styles are embedded; links stay on this server.
        for (attribute, embedded) in [("src=\"", true), ("href=\"", false)] {
            for reference in page.split(attribute).skip(1) {
                let target = reference.split('"').next().unwrap();
                let ok = asset(target).is_some()
                    || (!embedded && (target.starts_with('#') || target == "/metrics"));
                assert!(ok, "{target} referenced by the page is not served here");
            }
        }
        assert!(!page.contains("http://") && !page.contains("https://"));
        let uplot = asset("/ui/uPlot.iife.min.js").unwrap().body;
        assert!(uplot.len() > 10_000, "uPlot embedded");
        let license = std::str::from_utf8(asset("/ui/licenses/uPlot.txt").unwrap().body).unwrap();
        assert!(license.contains("MIT"), "{license}");
    }
}
