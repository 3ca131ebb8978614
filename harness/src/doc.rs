//! A small document model (headings, paragraphs, tables, lists, images)
//! rendered to Markdown and HTML: the report and the security section are
//! built once as blocks and written in both forms.

/// One block of a document.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    /// A heading of level 1-4.
    H(u8, String),
    /// A paragraph (Markdown inline markup allowed).
    P(String),
    /// A table: header and rows.
    Table(Vec<String>, Vec<Vec<String>>),
    /// A bulleted list.
    List(Vec<String>),
    /// A chart: file stem (`.svg` and `.png` beside the document) and caption.
    Img(String, String),
}

impl Block {
    /// A table from a rendered grid.
    pub fn grid(g: crate::compare::tables::Grid) -> Block {
        Block::Table(g.header, g.rows)
    }
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// Markdown.
pub fn markdown(doc: &[Block]) -> String {
    let mut s = String::new();
    for b in doc {
        match b {
            Block::H(l, t) => s.push_str(&format!("{} {t}\n\n", "#".repeat(*l as usize))),
            Block::P(t) => s.push_str(&format!("{t}\n\n")),
            Block::Table(h, rows) => {
                s.push_str(&format!(
                    "| {} |\n",
                    h.iter().map(|c| cell(c)).collect::<Vec<_>>().join(" | ")
                ));
                s.push_str(&format!("|{}\n", "---|".repeat(h.len())));
                for r in rows {
                    let cells: Vec<String> = r.iter().map(|c| cell(c)).collect();
                    s.push_str(&format!("| {} |\n", cells.join(" | ")));
                }
                s.push('\n');
            }
            Block::List(items) => {
                for i in items {
                    s.push_str(&format!("- {}\n", i.replace('\n', " ")));
                }
                s.push('\n');
            }
            Block::Img(file, alt) => s.push_str(&format!(
                "![{alt}]({file}.svg)\n\n([PNG]({file}.png), [SVG]({file}.svg))\n\n"
            )),
        }
    }
    s
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Markdown's inline `code` and **bold** as HTML, the rest escaped.
fn inline(s: &str) -> String {
    let e = esc(s);
    let mut out = String::new();
    let mut code = false;
    for (i, part) in e.split('`').enumerate() {
        if i > 0 {
            out.push_str(if code { "</code>" } else { "<code>" });
            code = !code;
        }
        if code {
            out.push_str(part);
        } else {
            let mut bold = false;
            for (j, q) in part.split("**").enumerate() {
                if j > 0 {
                    out.push_str(if bold { "</b>" } else { "<b>" });
                    bold = !bold;
                }
                out.push_str(q);
            }
            if bold {
                out.push_str("</b>");
            }
        }
    }
    if code {
        out.push_str("</code>");
    }
    out
}

/// A standalone HTML page.
pub fn html(doc: &[Block], title: &str) -> String {
    let mut s = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\n<style>\
body{{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}}\
table{{border-collapse:collapse;margin:1em 0;font-size:90%}}td,th{{border:1px solid #bbb;padding:2px 6px;text-align:right}}\
td:first-child,th:first-child{{text-align:left}}img{{max-width:100%}}code{{background:#f3f3f3}}\
</style></head><body>\n",
        esc(title)
    );
    for b in doc {
        match b {
            Block::H(l, t) => s.push_str(&format!("<h{l}>{}</h{l}>\n", inline(t))),
            Block::P(t) => s.push_str(&format!("<p>{}</p>\n", inline(t))),
            Block::Table(h, rows) => {
                s.push_str("<table><thead><tr>");
                for c in h {
                    s.push_str(&format!("<th>{}</th>", inline(c)));
                }
                s.push_str("</tr></thead><tbody>\n");
                for r in rows {
                    s.push_str("<tr>");
                    for c in r {
                        s.push_str(&format!("<td>{}</td>", inline(c)));
                    }
                    s.push_str("</tr>\n");
                }
                s.push_str("</tbody></table>\n");
            }
            Block::List(items) => {
                s.push_str("<ul>\n");
                for i in items {
                    s.push_str(&format!("<li>{}</li>\n", inline(i)));
                }
                s.push_str("</ul>\n");
            }
            Block::Img(file, alt) => s.push_str(&format!(
                "<figure><img src=\"{file}.svg\" alt=\"{a}\"><figcaption>{a} (<a href=\"{file}.png\">PNG</a>)</figcaption></figure>\n",
                a = esc(alt)
            )),
        }
    }
    s.push_str("</body></html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_renderings() {
        let d = vec![
            Block::H(2, "T".into()),
            Block::P("a `b<c` and **d**".into()),
            Block::Table(vec!["x".into()], vec![vec!["1|2".into()]]),
            Block::List(vec!["one".into()]),
        ];
        let m = markdown(&d);
        assert!(m.contains("## T\n"));
        assert!(m.contains("| 1\\|2 |"));
        assert!(m.contains("- one\n"));
        let h = html(&d, "t");
        assert!(h.contains("<code>b&lt;c</code>"));
        assert!(h.contains("<b>d</b>"));
        assert!(h.contains("<td>1|2</td>"));
        assert!(h.contains("<li>one</li>"));
    }
}
