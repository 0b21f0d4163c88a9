//! The dashboard: one static page, its script and its style, bundled into
//! the binary with `include_str!` so the node serves them with no file or
//! network access, and the page loads nothing from anywhere else.
//!
//! The page polls the JSON endpoints (`/status`, `/model`, `/jobs`) and
//! draws the scores over height as SVG itself; it holds no state the node
//! does not already serve.

/// A file the API serves as it is.
#[derive(Debug, PartialEq)]
pub struct Asset {
    pub content_type: &'static str,
    pub body: &'static str,
}

const PAGE: Asset = Asset {
    content_type: "text/html; charset=utf-8",
    body: include_str!("dashboard/index.html"),
};
const SCRIPT: Asset = Asset {
    content_type: "text/javascript; charset=utf-8",
    body: include_str!("dashboard/dashboard.js"),
};
const STYLE: Asset = Asset {
    content_type: "text/css; charset=utf-8",
    body: include_str!("dashboard/dashboard.css"),
};

/// The asset at `/{name}`: the page at `/` (name ""), its script and style.
pub fn asset(name: &str) -> Option<&'static Asset> {
    match name {
        "" => Some(&PAGE),
        "dashboard.js" => Some(&SCRIPT),
        "dashboard.css" => Some(&STYLE),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        let page = asset("").unwrap().body;
        assert!(page.contains("src=\"/dashboard.js\""), "{page}");
        assert!(page.contains("href=\"/dashboard.css\""), "{page}");
        for name in ["", "dashboard.js", "dashboard.css"] {
            let body = asset(name).unwrap().body;
            for external in ["http://", "https://", "//cdn", "@import"] {
                // The SVG namespace is a name, not a fetch.
                let fetched = body
                    .match_indices(external)
                    .any(|(at, _)| !body[at..].starts_with("http://www.w3.org/2000/svg"));
                assert!(!fetched, "{name:?} refers to {external}");
            }
        }
        assert_eq!(asset("index.html"), None);
    }
}
