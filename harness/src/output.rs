//! Plain-text tables and CSV for the CLI.

/// A table with a header row, printed with aligned columns.
#[derive(Debug, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    right: Vec<bool>,
}

impl Table {
    /// Columns; a name starting with `>` is right-aligned (the `>` is dropped).
    pub fn new(cols: &[&str]) -> Self {
        Table {
            header: cols
                .iter()
                .map(|c| c.trim_start_matches('>').to_string())
                .collect(),
            right: cols.iter().map(|c| c.starts_with('>')).collect(),
            rows: Vec::new(),
        }
    }

    /// Add a row (missing cells are blank).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Render with two spaces between columns and a rule under the header.
    pub fn render(&self) -> String {
        let n = self.header.len();
        let mut w: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate().take(n) {
                w[i] = w[i].max(c.chars().count());
            }
        }
        let line = |cells: &[String]| -> String {
            let mut s = String::new();
            for (i, width) in w.iter().enumerate() {
                let c = cells.get(i).map(String::as_str).unwrap_or("");
                let pad = width.saturating_sub(c.chars().count());
                if i > 0 {
                    s.push_str("  ");
                }
                if self.right[i] {
                    s.push_str(&" ".repeat(pad));
                    s.push_str(c);
                } else {
                    s.push_str(c);
                    if i + 1 < n {
                        s.push_str(&" ".repeat(pad));
                    }
                }
            }
            s.trim_end().to_string()
        };
        let mut out = line(&self.header);
        out.push('\n');
        out.push_str(
            &w.iter()
                .map(|x| "-".repeat(*x))
                .collect::<Vec<_>>()
                .join("  "),
        );
        out.push('\n');
        for r in &self.rows {
            out.push_str(&line(r));
            out.push('\n');
        }
        out
    }

    /// Render as CSV (the csv crate: RFC 4180 quoting where a field needs it).
    pub fn csv(&self) -> String {
        let mut c = Csv::new(&self.header);
        for r in &self.rows {
            c.row(r);
        }
        c.finish()
    }
}

/// A CSV document written by the csv crate, the harness's one CSV writer
/// (fields quoted where they hold a comma, a quote or a line break; `\n`
/// line ends).
pub struct Csv(csv::Writer<Vec<u8>>);

impl Csv {
    /// A document with this header row.
    pub fn new<S: AsRef<str>>(header: &[S]) -> Csv {
        let mut c = Csv(csv::WriterBuilder::new()
            .terminator(csv::Terminator::Any(b'\n'))
            .from_writer(Vec::new()));
        c.row(header);
        c
    }

    /// One record.
    pub fn row<S: AsRef<str>>(&mut self, cells: &[S]) {
        // Writing into memory cannot fail.
        let _ = self.0.write_record(cells.iter().map(|c| c.as_ref()));
    }

    /// The text.
    pub fn finish(self) -> String {
        let bytes = self
            .0
            .into_inner()
            .unwrap_or_else(|e| e.into_inner().get_ref().clone());
        String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }
}

/// A number with `d` decimals.
pub fn fixed(x: f64, d: usize) -> String {
    format!("{x:.d$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_and_csv() {
        let mut t = Table::new(&["name", ">n"]);
        t.row(vec!["a".into(), "1".into()]);
        t.row(vec!["b,c".into(), "100".into()]);
        let r = t.render();
        assert!(r.contains("a       1"), "{r}");
        assert_eq!(t.csv(), "name,n\na,1\n\"b,c\",100\n");
    }
}
