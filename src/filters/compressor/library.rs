//! The compressor libraries (`compressor_library`): gzip, brotli and zstd, compiled once from
//! their protos, and the per-stream [`Encoder`] each of them makes. An encoder keeps only its
//! own state (the compression window and tables); each input frame is compressed and flushed
//! at once, so a slow body is never held back waiting for more input.

use crate::config::{ConfigError, Within, u32_or};
use crate::stats::Store;
use envoy_types::pb::envoy::config::core::v3 as core_pb;
use envoy_types::pb::envoy::extensions::compression::brotli::compressor::v3 as brotli_pb;
use envoy_types::pb::envoy::extensions::compression::gzip::compressor::v3 as gzip_pb;
use envoy_types::pb::envoy::extensions::compression::zstd::compressor::v3 as zstd_pb;
use std::io::{self, Write};
use std::sync::Arc;

/// A content coding the compressor filter can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `gzip`.
    Gzip,
    /// `br`.
    Brotli,
    /// `zstd`.
    Zstd,
}

impl Encoding {
    /// The `Content-Encoding` / `Accept-Encoding` token.
    pub fn token(self) -> &'static str {
        match self {
            Encoding::Gzip => "gzip",
            Encoding::Brotli => "br",
            Encoding::Zstd => "zstd",
        }
    }

    /// The library's own stat prefix (`<...>.compressor.<name>.<this>.`).
    pub fn stat_name(self) -> &'static str {
        match self {
            Encoding::Gzip => "gzip",
            Encoding::Brotli => "brotli",
            Encoding::Zstd => "zstd",
        }
    }

    /// Index for small per-encoding tables.
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// The encoding a token names exactly (Envoy compares these case-sensitively).
    pub(crate) fn from_token(t: &str) -> Option<Self> {
        match t {
            "gzip" => Some(Encoding::Gzip),
            "br" => Some(Encoding::Brotli),
            "zstd" => Some(Encoding::Zstd),
            _ => None,
        }
    }
}

/// A compiled `compressor_library`.
#[derive(Debug, Clone)]
pub enum Library {
    /// `envoy.compression.gzip.compressor`: level 1..=9 (the default compression is 6).
    Gzip {
        /// `compression_level`.
        level: u32,
    },
    /// `envoy.compression.brotli.compressor`.
    Brotli {
        /// `quality` (default 3), `window_bits` (18), `input_block_bits` (24), `encoder_mode`,
        /// `disable_literal_context_modeling`.
        params: Box<brotli::enc::BrotliEncoderParams>,
        /// `chunk_size` (default 4096): the encoder's output buffer.
        chunk_size: usize,
    },
    /// `envoy.compression.zstd.compressor`.
    Zstd {
        /// `compression_level` (0: zstd's default, 3).
        level: i32,
        /// `enable_checksum`.
        checksum: bool,
        /// `strategy` (`None`: zstd's choice for the level).
        strategy: Option<zstd::zstd_safe::Strategy>,
        /// `dictionary`, read when the configuration is compiled.
        dictionary: Option<Arc<[u8]>>,
    },
}

fn in_range(field: &str, v: Option<u32>, lo: u32, hi: u32) -> Result<(), ConfigError> {
    match v {
        Some(v) if v < lo || v > hi => Err(ConfigError::new(
            field,
            format!("{v} is out of range {lo}..={hi}"),
        )),
        _ => Ok(()),
    }
}

/// The largest zstd dictionary tern reads from a file or inline source.
const MAX_DICTIONARY: u64 = 16 << 20;

impl Library {
    /// Compile a `compressor_library.typed_config` (gzip, brotli or zstd).
    pub fn compile(
        tc: &crate::config::TypedConfig<'_>,
        store: &Store,
    ) -> Result<Self, ConfigError> {
        use prost::Name;
        let url = tc.type_url();
        if url == gzip_pb::Gzip::type_url() {
            let g: gzip_pb::Gzip = tc.decode()?;
            let v = |x: &Option<envoy_types::pb::google::protobuf::UInt32Value>| {
                x.as_ref().map(|x| x.value)
            };
            in_range("memory_level", v(&g.memory_level), 1, 9)?;
            in_range("window_bits", v(&g.window_bits), 9, 15)?;
            in_range("chunk_size", v(&g.chunk_size), 4096, 65536)?;
            let level = match g.compression_level {
                0 => 6,
                l @ 1..=9 => l as u32,
                l => {
                    return Err(ConfigError::new(
                        "compression_level",
                        format!("{l} is not a defined CompressionLevel"),
                    ));
                }
            };
            if !(0..=4).contains(&g.compression_strategy) {
                return Err(ConfigError::new(
                    "compression_strategy",
                    format!(
                        "{} is not a defined CompressionStrategy",
                        g.compression_strategy
                    ),
                ));
            }
            if g.memory_level.is_some() || g.window_bits.is_some() || g.compression_strategy != 0 {
                store.not_enforced(
                    "envoy.compression.gzip.compressor.tuning",
                    "gzip memory_level, window_bits and compression_strategy: the pure-Rust \
                     deflate always uses a 32 KiB window and its own strategy (the output is \
                     standard gzip)",
                );
            }
            Ok(Library::Gzip { level })
        } else if url == brotli_pb::Brotli::type_url() {
            let b: brotli_pb::Brotli = tc.decode()?;
            let v = |x: &Option<envoy_types::pb::google::protobuf::UInt32Value>| {
                x.as_ref().map(|x| x.value)
            };
            in_range("quality", v(&b.quality), 0, 11)?;
            in_range("window_bits", v(&b.window_bits), 10, 24)?;
            in_range("input_block_bits", v(&b.input_block_bits), 16, 24)?;
            in_range("chunk_size", v(&b.chunk_size), 4096, 65536)?;
            use brotli::enc::backward_references::BrotliEncoderMode as Mode;
            let mode = match b.encoder_mode {
                0 | 1 => Mode::BROTLI_MODE_GENERIC,
                2 => Mode::BROTLI_MODE_TEXT,
                3 => Mode::BROTLI_MODE_FONT,
                m => {
                    return Err(ConfigError::new(
                        "encoder_mode",
                        format!("{m} is not a defined EncoderMode"),
                    ));
                }
            };
            let params = brotli::enc::BrotliEncoderParams {
                quality: u32_or(b.quality.as_ref(), 3) as i32,
                lgwin: u32_or(b.window_bits.as_ref(), 18) as i32,
                lgblock: u32_or(b.input_block_bits.as_ref(), 24) as i32,
                mode,
                disable_literal_context_modeling: i32::from(b.disable_literal_context_modeling),
                ..Default::default()
            };
            Ok(Library::Brotli {
                params: Box::new(params),
                chunk_size: u32_or(b.chunk_size.as_ref(), 4096) as usize,
            })
        } else if url == zstd_pb::Zstd::type_url() {
            let z: zstd_pb::Zstd = tc.decode()?;
            in_range(
                "chunk_size",
                z.chunk_size.as_ref().map(|x| x.value),
                4096,
                65536,
            )?;
            use zstd::zstd_safe::Strategy as S;
            let strategy = match z.strategy {
                0 => None,
                1 => Some(S::ZSTD_fast),
                2 => Some(S::ZSTD_dfast),
                3 => Some(S::ZSTD_greedy),
                4 => Some(S::ZSTD_lazy),
                5 => Some(S::ZSTD_lazy2),
                6 => Some(S::ZSTD_btlazy2),
                7 => Some(S::ZSTD_btopt),
                8 => Some(S::ZSTD_btultra),
                9 => Some(S::ZSTD_btultra2),
                s => {
                    return Err(ConfigError::new(
                        "strategy",
                        format!("{s} is not a defined Strategy"),
                    ));
                }
            };
            let level = z.compression_level.as_ref().map_or(0, |l| {
                l.value.min(zstd::zstd_safe::max_c_level() as u32) as i32
            });
            let dictionary = match &z.dictionary {
                Some(d) => Some(data_source(d).within("dictionary")?),
                None => None,
            };
            Ok(Library::Zstd {
                level,
                checksum: z.enable_checksum,
                strategy,
                dictionary,
            })
        } else {
            Err(ConfigError::new(
                "typed_config",
                format!("unknown compressor library {url} (gzip, brotli or zstd)"),
            ))
        }
    }

    /// The content coding this library produces.
    pub fn encoding(&self) -> Encoding {
        match self {
            Library::Gzip { .. } => Encoding::Gzip,
            Library::Brotli { .. } => Encoding::Brotli,
            Library::Zstd { .. } => Encoding::Zstd,
        }
    }

    /// A fresh encoder for one stream.
    pub fn encoder(&self) -> io::Result<Encoder> {
        Ok(match self {
            Library::Gzip { level } => Encoder::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(*level),
            )),
            Library::Brotli { params, chunk_size } => Encoder::Brotli(Some(Box::new(
                brotli::CompressorWriter::with_params(Vec::new(), *chunk_size, params),
            ))),
            Library::Zstd {
                level,
                checksum,
                strategy,
                dictionary,
            } => {
                let dict = dictionary.as_deref().unwrap_or(&[]);
                let mut e =
                    zstd::stream::write::Encoder::with_dictionary(Vec::new(), *level, dict)?;
                e.include_checksum(*checksum)?;
                if let Some(s) = strategy {
                    e.set_parameter(zstd::zstd_safe::CParameter::Strategy(*s))?;
                }
                Encoder::Zstd(e)
            }
        })
    }
}

/// A `DataSource` (the zstd dictionary) read once, when the configuration is compiled.
fn data_source(d: &core_pb::DataSource) -> Result<Arc<[u8]>, ConfigError> {
    use core_pb::data_source::Specifier;
    let bytes = match &d.specifier {
        Some(Specifier::InlineBytes(b)) => b.clone(),
        Some(Specifier::InlineString(s)) => s.clone().into_bytes(),
        Some(Specifier::Filename(f)) => {
            let file = std::fs::File::open(f)
                .map_err(|e| ConfigError::new("filename", format!("cannot open {f}: {e}")))?;
            let mut buf = Vec::new();
            io::Read::read_to_end(&mut io::Read::take(file, MAX_DICTIONARY + 1), &mut buf)
                .map_err(|e| ConfigError::new("filename", format!("cannot read {f}: {e}")))?;
            buf
        }
        Some(Specifier::EnvironmentVariable(v)) => std::env::var(v)
            .map_err(|_| {
                ConfigError::new(
                    "environment_variable",
                    format!("{v} is not set (or not UTF-8)"),
                )
            })?
            .into_bytes(),
        None => return Err(ConfigError::new("specifier", "is required")),
    };
    if bytes.len() as u64 > MAX_DICTIONARY {
        return Err(ConfigError::new(
            "",
            format!("larger than {MAX_DICTIONARY} bytes"),
        ));
    }
    Ok(bytes.into())
}

/// One stream's compressor. Output accumulates in the encoder's `Vec` and is taken after each
/// call, so what is held between frames is the encoder's own state only.
pub enum Encoder {
    /// gzip (deflate in a gzip member).
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    /// brotli; `None` once finished.
    Brotli(Option<Box<brotli::CompressorWriter<Vec<u8>>>>),
    /// zstd (one frame).
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Encoder::Gzip(_) => "Encoder::Gzip",
            Encoder::Brotli(_) => "Encoder::Brotli",
            Encoder::Zstd(_) => "Encoder::Zstd",
        })
    }
}

fn finished() -> io::Error {
    io::Error::other("compressor already finished")
}

impl Encoder {
    /// Compress `input` and flush (Envoy's `Compressor::State::Flush`), or end the stream
    /// (`Finish`) when `last`. Returns the bytes produced (maybe none).
    pub fn compress(&mut self, input: &[u8], last: bool) -> io::Result<Vec<u8>> {
        match self {
            Encoder::Gzip(e) => {
                e.write_all(input)?;
                if last {
                    e.try_finish()?;
                } else {
                    e.flush()?;
                }
                Ok(std::mem::take(e.get_mut()))
            }
            Encoder::Brotli(slot) => {
                let w = slot.as_mut().ok_or_else(finished)?;
                w.write_all(input)?;
                if last {
                    let w = slot.take().ok_or_else(finished)?;
                    Ok(w.into_inner())
                } else {
                    w.flush()?;
                    Ok(std::mem::take(w.get_mut()))
                }
            }
            Encoder::Zstd(e) => {
                e.write_all(input)?;
                if last {
                    e.do_finish()?;
                } else {
                    e.flush()?;
                }
                Ok(std::mem::take(e.get_mut()))
            }
        }
    }
}
