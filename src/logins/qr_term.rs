//! QR codes in a terminal: reads the MP platform's QR image (PNG or JPEG), decodes the text it
//! carries and draws a clean code for that text with Unicode half blocks, two modules per
//! character cell. WeRead hands out the QR text itself: [`render_text`] draws it directly.
//!
//! The drawing suits a dark terminal: light modules (and the quiet zone) are drawn as blocks,
//! dark modules are left to the background, so the phone sees dark-on-light.

use std::io::Cursor;

/// Largest image accepted, in bytes (the real QR is a few kilobytes).
pub const MAX_IMAGE_BYTES: usize = 4 * 1024 * 1024;

/// Largest image side accepted, in pixels.
const MAX_SIDE: u32 = 4096;

/// Light modules drawn around the code (the scanner's quiet zone).
const QUIET: usize = 2;

/// Why a QR code could not be read or drawn.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QrError {
    /// Neither PNG nor JPEG magic bytes.
    #[error("not a PNG or JPEG image")]
    UnknownFormat,
    /// The image is larger than we accept.
    #[error("image too large")]
    TooLarge,
    /// The image bytes cannot be decoded.
    #[error("image cannot be decoded: {0}")]
    Image(String),
    /// No QR code was found in the image.
    #[error("no QR code found in the image")]
    NotFound,
    /// A QR code was found but its content cannot be read.
    #[error("QR code cannot be read: {0}")]
    Unreadable(String),
    /// The text does not fit into a QR code.
    #[error("text cannot be encoded as a QR code: {0}")]
    Encode(String),
}

/// The image formats the MP platform answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    /// `\x89PNG\r\n\x1a\n`.
    Png,
    /// `FF D8 FF`.
    Jpeg,
}

/// The format named by the magic bytes of `bytes`, if an image.
pub fn sniff(bytes: &[u8]) -> Option<ImageKind> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(ImageKind::Png)
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(ImageKind::Jpeg)
    } else {
        None
    }
}

/// A decoded image as 8-bit luminance, row by row.
struct Grey {
    width: usize,
    height: usize,
    pixels: Vec<u8>,
}

/// Luminance of an RGB pixel (ITU-R BT.601 weights).
fn luma(r: u8, g: u8, b: u8) -> u8 {
    let y = (u32::from(r) * 299 + u32::from(g) * 587 + u32::from(b) * 114) / 1000;
    u8::try_from(y).unwrap_or(u8::MAX)
}

/// `value` composited over white with opacity `alpha`.
fn over_white(value: u8, alpha: u8) -> u8 {
    let v = (u32::from(value) * u32::from(alpha) + 255 * (255 - u32::from(alpha))) / 255;
    u8::try_from(v).unwrap_or(u8::MAX)
}

fn check_side(width: u32, height: u32) -> Result<(), QrError> {
    if width == 0 || height == 0 {
        return Err(QrError::Image("empty image".into()));
    }
    if width > MAX_SIDE || height > MAX_SIDE {
        return Err(QrError::TooLarge);
    }
    Ok(())
}

fn decode_png(bytes: &[u8]) -> Result<Grey, QrError> {
    let bad = |e: png::DecodingError| QrError::Image(e.to_string());
    let mut decoder = png::Decoder::new_with_limits(
        Cursor::new(bytes),
        png::Limits {
            bytes: 64 * 1024 * 1024,
        },
    );
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().map_err(bad)?;
    {
        let info = reader.info();
        check_side(info.width, info.height)?;
    }
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| QrError::Image("image too large".into()))?;
    let mut buf = vec![0; size];
    let out = reader.next_frame(&mut buf).map_err(bad)?;
    let (width, height) = (out.width as usize, out.height as usize);
    let channels = match out.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Indexed => {
            return Err(QrError::Image("palette not expanded".into()));
        }
    };
    let mut pixels = Vec::with_capacity(width * height);
    for row in buf.chunks(out.line_size).take(height) {
        for px in row.chunks(channels).take(width) {
            pixels.push(match *px {
                [v] => v,
                [v, a] => over_white(v, a),
                [r, g, b] => luma(r, g, b),
                [r, g, b, a] => over_white(luma(r, g, b), a),
                _ => 255,
            });
        }
    }
    Ok(Grey {
        width,
        height,
        pixels,
    })
}

fn decode_jpeg(bytes: &[u8]) -> Result<Grey, QrError> {
    let mut decoder = jpeg_decoder::Decoder::new(Cursor::new(bytes));
    decoder
        .read_info()
        .map_err(|e| QrError::Image(e.to_string()))?;
    let info = decoder
        .info()
        .ok_or_else(|| QrError::Image("no JPEG header".into()))?;
    check_side(u32::from(info.width), u32::from(info.height))?;
    let data = decoder
        .decode()
        .map_err(|e| QrError::Image(e.to_string()))?;
    let (width, height) = (usize::from(info.width), usize::from(info.height));
    let pixels: Vec<u8> = match info.pixel_format {
        jpeg_decoder::PixelFormat::L8 => data,
        jpeg_decoder::PixelFormat::L16 => data.chunks(2).map(|p| p[0]).collect(),
        jpeg_decoder::PixelFormat::RGB24 => {
            data.chunks(3).map(|p| luma(p[0], p[1], p[2])).collect()
        }
        jpeg_decoder::PixelFormat::CMYK32 => data
            .chunks(4)
            .map(|p| {
                let k = 255 - u32::from(p[3]);
                let ch = |c: u8| u8::try_from((255 - u32::from(c)) * k / 255).unwrap_or(0);
                luma(ch(p[0]), ch(p[1]), ch(p[2]))
            })
            .collect(),
    };
    if pixels.len() < width * height {
        return Err(QrError::Image("truncated JPEG".into()));
    }
    Ok(Grey {
        width,
        height,
        pixels,
    })
}

/// The text carried by the QR code in a PNG or JPEG image.
///
/// # Errors
/// Not an image, an undecodable or oversized image, no QR code, or an unreadable one.
pub fn decode_image(bytes: &[u8]) -> Result<String, QrError> {
    if bytes.len() > MAX_IMAGE_BYTES {
        return Err(QrError::TooLarge);
    }
    let grey = match sniff(bytes) {
        Some(ImageKind::Png) => decode_png(bytes)?,
        Some(ImageKind::Jpeg) => decode_jpeg(bytes)?,
        None => return Err(QrError::UnknownFormat),
    };
    let mut prepared =
        rqrr::PreparedImage::prepare_from_greyscale(grey.width, grey.height, |x, y| {
            grey.pixels[y * grey.width + x]
        });
    let grids = prepared.detect_grids();
    let mut last = QrError::NotFound;
    for grid in grids {
        match grid.decode() {
            Ok((_, text)) => return Ok(text),
            Err(e) => last = QrError::Unreadable(e.to_string()),
        }
    }
    Err(last)
}

/// Draws a square module grid of `size` (`dark(x, y)`) with half blocks and a quiet zone,
/// one line per two module rows, each line ending in `\n`.
pub fn render_grid(size: usize, dark: impl Fn(usize, usize) -> bool) -> String {
    let side = size + 2 * QUIET;
    let light = |x: usize, y: usize| {
        if x < QUIET || y < QUIET || x >= QUIET + size || y >= QUIET + size {
            true
        } else {
            !dark(x - QUIET, y - QUIET)
        }
    };
    let mut out = String::with_capacity((side + 1) * side.div_ceil(2) * 3);
    for y in (0..side).step_by(2) {
        for x in 0..side {
            let top = light(x, y);
            let bottom = y + 1 >= side || light(x, y + 1);
            out.push(match (top, bottom) {
                (true, true) => '█',
                (true, false) => '▀',
                (false, true) => '▄',
                (false, false) => ' ',
            });
        }
        out.push('\n');
    }
    out
}

/// Draws a QR code for `text` (e.g. WeRead's `https://weread.qq.com/web/confirm?uid=…`).
///
/// # Errors
/// The text is too long for a QR code.
pub fn render_text(text: &str) -> Result<String, QrError> {
    let code = qrcode::QrCode::new(text.as_bytes()).map_err(|e| QrError::Encode(e.to_string()))?;
    let size = code.width();
    let colors = code.to_colors();
    Ok(render_grid(size, |x, y| {
        colors[y * size + x] == qrcode::Color::Dark
    }))
}

/// Decodes the QR code in `image` and draws it again for the terminal.
///
/// # Errors
/// As [`decode_image`] and [`render_text`].
pub fn render_image(image: &[u8]) -> Result<String, QrError> {
    render_text(&decode_image(image)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads a drawing back into modules (dark = true), quiet zone included.
    fn parse_drawing(drawing: &str) -> Vec<Vec<bool>> {
        let mut rows = Vec::new();
        for line in drawing.lines() {
            let (mut top, mut bottom) = (Vec::new(), Vec::new());
            for c in line.chars() {
                let (t, b) = match c {
                    '█' => (false, false),
                    '▀' => (false, true),
                    '▄' => (true, false),
                    ' ' => (true, true),
                    other => panic!("unexpected character {other:?}"),
                };
                top.push(t);
                bottom.push(b);
            }
            rows.push(top);
            rows.push(bottom);
        }
        rows
    }

    /// Decodes module rows scaled up to pixels, as a camera would see them.
    fn decode_modules(rows: &[Vec<bool>]) -> String {
        let scale = 4;
        let w = rows[0].len() * scale;
        let h = rows.len() * scale;
        let mut img =
            rqrr::PreparedImage::prepare_from_bitmap(w, h, |x, y| rows[y / scale][x / scale]);
        let grids = img.detect_grids();
        assert_eq!(grids.len(), 1, "one code found");
        grids[0].decode().expect("decodes").1
    }

    #[test]
    fn a_rendered_code_decodes_back_to_its_text() {
        let text = "https://weread.qq.com/web/confirm?uid=AbC-123_xyz%2B";
        let drawing = render_text(text).expect("renders");
        assert!(drawing.contains('█') && (drawing.contains('▀') || drawing.contains('▄')));
        let rows = parse_drawing(&drawing);
        assert!(rows.iter().all(|r| r.len() == rows[0].len()));
        assert_eq!(decode_modules(&rows), text);
    }

    #[test]
    fn png_and_jpeg_images_decode_and_redraw() {
        let text = "http://127.0.0.1:1/scan?flow=42";
        let png_bytes = crate::testkit::wechat::qr_png(text, 6);
        assert_eq!(sniff(&png_bytes), Some(ImageKind::Png));
        assert_eq!(decode_image(&png_bytes).expect("png decodes"), text);
        let drawing = render_image(&png_bytes).expect("redraws");
        assert_eq!(decode_modules(&parse_drawing(&drawing)), text);

        // The same code as a greyscale JPEG.
        let code = qrcode::QrCode::new(text).expect("encodes");
        let (size, scale, margin) = (code.width(), 6, 4);
        let side = (size + 2 * margin) * scale;
        let colors = code.to_colors();
        let mut pixels = vec![255u8; side * side];
        for y in 0..side {
            for x in 0..side {
                let (mx, my) = (x / scale, y / scale);
                if (margin..margin + size).contains(&mx)
                    && (margin..margin + size).contains(&my)
                    && colors[(my - margin) * size + (mx - margin)] == qrcode::Color::Dark
                {
                    pixels[y * side + x] = 0;
                }
            }
        }
        let mut jpeg = Vec::new();
        let side16 = u16::try_from(side).expect("small");
        jpeg_encoder::Encoder::new(&mut jpeg, 90)
            .encode(&pixels, side16, side16, jpeg_encoder::ColorType::Luma)
            .expect("jpeg encodes");
        assert_eq!(sniff(&jpeg), Some(ImageKind::Jpeg));
        assert_eq!(decode_image(&jpeg).expect("jpeg decodes"), text);
    }

    #[test]
    fn non_images_and_images_without_a_code_are_clear_errors() {
        assert_eq!(
            decode_image(br#"{"base_resp":{"ret":1}}"#),
            Err(QrError::UnknownFormat)
        );
        assert!(matches!(
            decode_image(b"\x89PNG\r\n\x1a\ngarbage"),
            Err(QrError::Image(_))
        ));
        let blank = crate::testkit::wechat::png_grey(8, 8, &[255; 64]);
        assert_eq!(decode_image(&blank), Err(QrError::NotFound));
    }
}
