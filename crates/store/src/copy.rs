//! PostgreSQL's binary `COPY` format, encoded by hand: a signature, then
//! per row a field count and each field as a length (-1 for NULL) and its
//! bytes in the type's binary send format, then a trailer of -1
//! (<https://www.postgresql.org/docs/current/sql-copy.html>, "Binary
//! Format"). Only the types needed here: `text`, `bigint`, `uuid`.

/// A buffer of rows in the binary `COPY` format.
#[derive(Debug)]
pub struct BinaryCopy {
    buf: Vec<u8>,
    rows: u64,
}

impl Default for BinaryCopy {
    fn default() -> Self {
        Self::new()
    }
}

impl BinaryCopy {
    pub fn new() -> Self {
        let mut buf = Vec::with_capacity(1 << 16);
        buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        buf.extend_from_slice(&0i32.to_be_bytes()); // flags: no OIDs
        buf.extend_from_slice(&0i32.to_be_bytes()); // no header extension
        Self { buf, rows: 0 }
    }

    /// Start a row of `fields` fields; then add exactly that many.
    pub fn row(&mut self, fields: i16) -> &mut Self {
        self.buf.extend_from_slice(&fields.to_be_bytes());
        self.rows += 1;
        self
    }

    /// A `text` field (its binary form is the UTF-8 bytes).
    pub fn text(&mut self, value: Option<&str>) -> &mut Self {
        match value {
            Some(s) => {
                let len = i32::try_from(s.len()).expect("a field is under 2 GB");
                self.buf.extend_from_slice(&len.to_be_bytes());
                self.buf.extend_from_slice(s.as_bytes());
            }
            None => self.buf.extend_from_slice(&(-1i32).to_be_bytes()),
        }
        self
    }

    /// A `bigint` field.
    pub fn int8(&mut self, value: i64) -> &mut Self {
        self.buf.extend_from_slice(&8i32.to_be_bytes());
        self.buf.extend_from_slice(&value.to_be_bytes());
        self
    }

    /// A `uuid` field.
    pub fn uuid(&mut self, value: uuid::Uuid) -> &mut Self {
        self.buf.extend_from_slice(&16i32.to_be_bytes());
        self.buf.extend_from_slice(value.as_bytes());
        self
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The whole stream, trailer included.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_binary_format() {
        let mut c = BinaryCopy::new();
        c.row(3).text(Some("é")).text(None).int8(258);
        assert_eq!(c.rows(), 1);
        let out = c.finish();
        let mut want = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0".to_vec();
        want.extend_from_slice(&[0, 3]);
        want.extend_from_slice(&[0, 0, 0, 2, 0xc3, 0xa9]);
        want.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        want.extend_from_slice(&[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 1, 2]);
        want.extend_from_slice(&[0xff, 0xff]);
        assert_eq!(out, want);
    }
}
