//! The invoice as a PDF: the same data and layout as the HTML document
//! ([`tollgate_core::invoice_document`]), drawn with `pdf-writer` in PDF's standard Helvetica.
//!
//! Why this renderer (measured and compared in docs/architecture.md): `pdf-writer` is the
//! typst project's low-level writer, with four small dependencies; it adds seconds, not
//! minutes, to a 2-core build, needs no browser or font files at run time, and writes no
//! timestamps or random ids, so the same invoice always gives the same bytes (the stored
//! object, the email attachment and the control API's download are identical). The standard
//! fonts need no embedding; text outside Windows-1252 prints as `?`.

use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str, TextStr};
use tollgate_core::invoice_document::{InvoiceDocument, format_money, period_label};

/// A4 in points.
const PAGE_WIDTH: i32 = 595;
const PAGE_HEIGHT: i32 = 842;
const MARGIN: i32 = 50;
/// Lowest baseline of a table row before a new page starts.
const BOTTOM: i32 = 70;
const ROW_HEIGHT: i32 = 15;
const TABLE_SIZE: i32 = 9;

const REGULAR: Name<'static> = Name(b"F1");
const BOLD: Name<'static> = Name(b"F2");

/// Table columns: (left edge or right edge, right-aligned).
const COL_NUMBER: i32 = MARGIN;
const COL_DESCRIPTION: i32 = 70;
const DESCRIPTION_WIDTH: i32 = 180;
const COL_KIND: i32 = 255;
const COL_QUANTITY_RIGHT: i32 = 370;
const COL_UNIT_RIGHT: i32 = 450;
const COL_AMOUNT_RIGHT: i32 = PAGE_WIDTH - MARGIN;

/// Renders the invoice. Deterministic: the same document gives the same bytes.
pub fn render_invoice_pdf(invoice: &InvoiceDocument, number: &str) -> Vec<u8> {
    let mut pages: Vec<Content> = Vec::new();
    let mut page = Content::new();
    let mut y = PAGE_HEIGHT - MARGIN - 20;
    text(&mut page, BOLD, 20, MARGIN, y, "Invoice");
    y -= 28;
    let period = format!(
        "{} ({} to {}, exclusive)",
        period_label(invoice.period_start),
        date(invoice.period_start),
        date(invoice.period_end)
    );
    let mut facts = vec![
        ("Number", number.to_owned()),
        ("Invoice id", invoice.invoice_id.to_string()),
        (
            "Customer",
            format!("{} ({})", invoice.tenant_name, invoice.tenant_slug),
        ),
        ("Period", period),
        ("Status", invoice.status.clone()),
    ];
    if let Some(at) = invoice.finalized_at {
        facts.push(("Finalized", date(at)));
    }
    for (label, value) in facts {
        text(&mut page, BOLD, 10, MARGIN, y, label);
        text(&mut page, REGULAR, 10, MARGIN + 80, y, &value);
        y -= 15;
    }
    y -= 15;
    y = table_header(&mut page, y);
    for (n, line) in invoice.lines.iter().enumerate() {
        if y < BOTTOM {
            pages.push(std::mem::replace(&mut page, Content::new()));
            y = table_header(&mut page, PAGE_HEIGHT - MARGIN - 10);
        }
        let size = TABLE_SIZE;
        text(
            &mut page,
            REGULAR,
            size,
            COL_NUMBER,
            y,
            &(n + 1).to_string(),
        );
        let description = fit(&line.description, size, DESCRIPTION_WIDTH);
        text(&mut page, REGULAR, size, COL_DESCRIPTION, y, &description);
        text(&mut page, REGULAR, size, COL_KIND, y, &line.kind);
        right(
            &mut page,
            REGULAR,
            size,
            COL_QUANTITY_RIGHT,
            y,
            &line.quantity.to_string(),
        );
        right(
            &mut page,
            REGULAR,
            size,
            COL_UNIT_RIGHT,
            y,
            &line.unit_price,
        );
        right(
            &mut page,
            REGULAR,
            size,
            COL_AMOUNT_RIGHT,
            y,
            &format_money(line.amount),
        );
        rule(&mut page, y - 5, 0.85);
        y -= ROW_HEIGHT;
    }
    if y < BOTTOM + ROW_HEIGHT {
        pages.push(std::mem::replace(&mut page, Content::new()));
        y = PAGE_HEIGHT - MARGIN - 10;
    }
    y -= 5;
    for (label, amount) in [("Subtotal", invoice.subtotal), ("Total", invoice.total)] {
        text(&mut page, BOLD, 10, COL_DESCRIPTION, y, label);
        right(
            &mut page,
            BOLD,
            10,
            COL_AMOUNT_RIGHT,
            y,
            &format_money(amount),
        );
        y -= ROW_HEIGHT;
    }
    pages.push(page);
    assemble(
        pages,
        &format!("Invoice {number} for {}", invoice.tenant_name),
    )
}

fn table_header(page: &mut Content, y: i32) -> i32 {
    let size = TABLE_SIZE;
    text(page, BOLD, size, COL_NUMBER, y, "#");
    text(page, BOLD, size, COL_DESCRIPTION, y, "Description");
    text(page, BOLD, size, COL_KIND, y, "Kind");
    right(page, BOLD, size, COL_QUANTITY_RIGHT, y, "Quantity");
    right(page, BOLD, size, COL_UNIT_RIGHT, y, "Unit price");
    right(page, BOLD, size, COL_AMOUNT_RIGHT, y, "Amount");
    rule(page, y - 5, 0.4);
    y - ROW_HEIGHT - 2
}

/// Writes the page tree, fonts and pages.
fn assemble(pages: Vec<Content>, title: &str) -> Vec<u8> {
    let mut pdf = Pdf::new();
    let catalog = Ref::new(1);
    let tree = Ref::new(2);
    let regular = Ref::new(3);
    let bold = Ref::new(4);
    let info = Ref::new(5);
    let first_page = 6;
    let page_ids: Vec<Ref> = (0..pages.len())
        .map(|i| Ref::new(first_page + 2 * i32::try_from(i).unwrap_or(0)))
        .collect();
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree)
        .kids(page_ids.iter().copied())
        .count(i32::try_from(page_ids.len()).unwrap_or(i32::MAX));
    for (font, base) in [(regular, "Helvetica"), (bold, "Helvetica-Bold")] {
        pdf.type1_font(font)
            .base_font(Name(base.as_bytes()))
            .encoding_predefined(Name(b"WinAnsiEncoding"));
    }
    pdf.document_info(info)
        .title(TextStr(title))
        .producer(TextStr("Tollgate"));
    for (id, content) in page_ids.iter().zip(pages) {
        let content_id = Ref::new(id.get() + 1);
        let mut page = pdf.page(*id);
        page.media_box(Rect::new(0.0, 0.0, pt(PAGE_WIDTH), pt(PAGE_HEIGHT)));
        page.parent(tree);
        page.contents(content_id);
        let mut resources = page.resources();
        let mut fonts = resources.fonts();
        fonts.pair(REGULAR, regular);
        fonts.pair(BOLD, bold);
        fonts.finish();
        resources.finish();
        page.finish();
        pdf.stream(content_id, &content.finish());
    }
    pdf.finish()
}

fn pt(value: i32) -> f32 {
    // Page coordinates are small integers: exact in f32.
    value as f32
}

fn text(page: &mut Content, font: Name, size: i32, x: i32, y: i32, value: &str) {
    let encoded = win_ansi(value);
    page.begin_text();
    page.set_font(font, pt(size));
    page.next_line(pt(x), pt(y));
    page.show(Str(&encoded));
    page.end_text();
}

fn right(page: &mut Content, font: Name, size: i32, right_edge: i32, y: i32, value: &str) {
    let bold = font == BOLD;
    let width = text_width(value, size, bold);
    text(page, font, size, right_edge - width, y, value);
}

fn rule(page: &mut Content, y: i32, gray: f32) {
    page.set_stroke_gray(gray);
    page.set_line_width(0.5);
    page.move_to(pt(MARGIN), pt(y));
    page.line_to(pt(PAGE_WIDTH - MARGIN), pt(y));
    page.stroke();
}

fn date(at: time::OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}",
        at.year(),
        u8::from(at.month()),
        at.day()
    )
}

/// Shortens `value` with an ellipsis until it fits `max_width` points.
fn fit(value: &str, size: i32, max_width: i32) -> String {
    if text_width(value, size, false) <= max_width {
        return value.to_owned();
    }
    let mut chars: Vec<char> = value.chars().collect();
    while !chars.is_empty() {
        chars.pop();
        let candidate: String = chars.iter().collect::<String>() + "...";
        if text_width(&candidate, size, false) <= max_width {
            return candidate;
        }
    }
    String::new()
}

/// Windows-1252 bytes (the standard fonts' WinAnsiEncoding); anything else is `?`.
fn win_ansi(value: &str) -> Vec<u8> {
    value
        .chars()
        .map(|c| match c {
            ' '..='~' => u8::try_from(u32::from(c)).unwrap_or(b'?'),
            '\u{A0}'..='\u{FF}' => u8::try_from(u32::from(c)).unwrap_or(b'?'),
            '€' => 0x80,
            '–' => 0x96,
            '—' => 0x97,
            '‘' => 0x91,
            '’' => 0x92,
            '“' => 0x93,
            '”' => 0x94,
            _ => b'?',
        })
        .collect()
}

/// Width in points, rounded up, from Helvetica's metrics (1/1000 em).
fn text_width(value: &str, size: i32, bold: bool) -> i32 {
    let units: i64 = value.chars().map(|c| i64::from(glyph_width(c, bold))).sum();
    let points = (units * i64::from(size) + 999) / 1000;
    i32::try_from(points).unwrap_or(i32::MAX)
}

/// Advance widths of Helvetica and Helvetica-Bold (regular, bold) from Adobe's AFM files.
fn glyph_width(c: char, bold: bool) -> u16 {
    let (regular, bold_width) = match c {
        '0'..='9' | '#' | '$' | '_' => (556, 556),
        ' ' | ',' | '.' | '/' => (278, 278),
        ':' | ';' | '!' => (278, 333),
        '-' | '(' | ')' => (333, 333),
        '%' => (889, 889),
        '&' => (667, 722),
        '\'' => (191, 238),
        '"' => (355, 474),
        'A' | 'B' | 'K' => (667, 722),
        'E' | 'P' | 'S' | 'V' | 'X' | 'Y' => (667, 667),
        'C' | 'D' | 'H' | 'N' | 'R' | 'U' => (722, 722),
        'F' | 'T' | 'Z' => (611, 611),
        'G' | 'O' | 'Q' => (778, 778),
        'I' => (278, 278),
        'J' => (500, 556),
        'L' => (556, 611),
        'M' => (833, 833),
        'W' => (944, 944),
        'a' | 'e' => (556, 556),
        'b' | 'd' | 'g' | 'h' | 'n' | 'o' | 'p' | 'q' | 'u' => (556, 611),
        'c' | 'k' | 's' | 'v' | 'x' | 'y' => (500, 556),
        'z' => (500, 500),
        'f' | 't' => (278, 333),
        'i' | 'j' | 'l' => (222, 278),
        'm' => (833, 889),
        'r' => (333, 389),
        'w' => (722, 778),
        // Wider than most glyphs: a right-aligned value may sit a little left, never overlap.
        _ => (667, 667),
    };
    if bold { bold_width } else { regular }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;
    use tollgate_core::invoice_document::InvoiceDocumentLine;
    use tollgate_core::{Currency, Money};
    use uuid::Uuid;

    use super::*;

    fn document(lines: usize) -> InvoiceDocument {
        let usd = |minor| Money::from_minor(minor, Currency::USD);
        InvoiceDocument {
            invoice_id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001),
            number: Some("TG-2026-000001".into()),
            tenant_name: "Acme & Söhne".into(),
            tenant_slug: "acme".into(),
            period_start: datetime!(2026-10-01 00:00 UTC),
            period_end: datetime!(2026-11-01 00:00 UTC),
            status: "finalized".into(),
            finalized_at: Some(datetime!(2026-11-01 00:05 UTC)),
            subtotal: usd(123_456_789),
            total: usd(123_456_789),
            lines: (0..lines)
                .map(|i| InvoiceDocumentLine {
                    kind: "usage".into(),
                    description: format!("Requests, block {i}"),
                    quantity: 2_500_000,
                    unit_price: "0.0004".into(),
                    amount: usd(1000),
                })
                .collect(),
        }
    }

    #[test]
    fn rendering_is_deterministic() {
        let first = render_invoice_pdf(&document(3), "2026-10-00000001");
        assert!(first.starts_with(b"%PDF-"));
        assert_eq!(first, render_invoice_pdf(&document(3), "2026-10-00000001"));
        let text = String::from_utf8_lossy(&first);
        assert!(
            text.contains("(1,234,567.89 USD)"),
            "amounts are drawn as text"
        );
        assert!(!text.contains("CreationDate"), "no timestamps");
    }

    #[test]
    fn long_invoices_continue_on_more_pages() {
        let pdf = render_invoice_pdf(&document(120), "n");
        let text = String::from_utf8_lossy(&pdf);
        assert!(text.contains("/Count 3"), "120 lines need three pages");
    }

    #[test]
    fn text_is_encoded_for_the_standard_fonts_and_fitted() {
        assert_eq!(win_ansi("Söhne €5 ✓"), b"S\xF6hne \x805 ?".to_vec());
        assert_eq!(text_width("1000", 10, false), 23);
        let fitted = fit(&"x".repeat(200), 9, 100);
        assert!(fitted.ends_with("...") && text_width(&fitted, 9, false) <= 100);
        assert_eq!(fit("short", 9, 100), "short");
    }
}
