// Writes the OBELICS Parquet test files with parquet-wasm (arrow-rs) and reads each back with
// hyparquet (a separate JavaScript implementation) into <name>.expected.json: the rows as the
// independent reader sees them ({texts, images}, null lists and elements kept), which
// tests/test_parquet.cpp compares our reader with. Also writes docs.jsonl, the same documents
// as JSONL, for the JSONL-vs-Parquet loader test. Run by tests/tools/regenerate_parquet_data.sh.
//
//   node make_obelics_parquet.mjs <output dir>
import fs from 'node:fs';
import path from 'node:path';
import * as arrow from 'apache-arrow';
import initParquetWasm, * as pq from 'parquet-wasm/esm';
import { parquetReadObjects, parquetMetadata } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';

// The ES module build, given its WebAssembly bytes (its Node build does not load as published).
await initParquetWasm(fs.readFileSync(new URL(import.meta.resolve('parquet-wasm/esm/parquet_wasm_bg.wasm'))));

const out = process.argv[2];
if (!out) throw new Error('usage: make_obelics_parquet.mjs <output dir>');

// sample.jsonl's three documents, with its metadata column.
const sampleRows = fs.readFileSync(path.join(out, 'sample.jsonl'), 'utf8')
  .split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));

// 24 documents with 0 to 2 images and text of varied length (repeated texts exercise the
// dictionary), plus rows that break the OBELICS rules at known places.
function docRows() {
  const rows = [];
  for (let i = 0; i < 24; ++i) {
    const texts = [`document ${i} says ${'w'.repeat((i % 7) * 3 + 1)}`];
    const images = [null];
    for (let k = 0; k < i % 3; ++k) {
      texts.push(null);
      images.push(k ? 'images/blue.png' : 'images/red.png');
    }
    if (i % 4 === 1) { texts.push('a shared closing line'); images.push(null); }
    rows.push({ texts, images, metadata: `{"document_url": "doc-${i}"}` });
  }
  // Broken rows, each a counted skip for both readers.
  rows.splice(5, 0, { texts: ['no images list'], images: null, metadata: 'null images' });
  rows.splice(9, 0, { texts: ['a', null], images: [null], metadata: 'length mismatch' });
  rows.splice(13, 0, { texts: [null, 'b'], images: [null, null], metadata: 'neither' });
  rows.splice(17, 0, { texts: ['c'], images: ['images/red.png'], metadata: 'both' });
  rows.splice(21, 0, { texts: [], images: [], metadata: 'empty' });
  return rows;
}

function table(rows, withTexts = true) {
  const strList = new arrow.List(new arrow.Field('element', new arrow.Utf8(), true));
  const schema = new arrow.Schema([
    new arrow.Field('images', strList, true),
    new arrow.Field('metadata', new arrow.Utf8(), true),
    new arrow.Field('general_metadata', new arrow.Utf8(), true),
    new arrow.Field('num_tokens', new arrow.Int64(), true),
    new arrow.Field('tags', new arrow.List(new arrow.Field('element', new arrow.Int32(), true)), true),
    ...(withTexts ? [new arrow.Field('texts', strList, true)] : []),
  ]);
  const col = (name, type, values) => arrow.vectorFromArray(values, type);
  const data = {
    images: col('images', strList, rows.map((r) => r.images)),
    metadata: col('metadata', new arrow.Utf8(), rows.map((r) => r.metadata ?? null)),
    general_metadata: col('general_metadata', new arrow.Utf8(),
      rows.map((r, i) => (i % 2 ? `{"warc": "crawl-${i}"}` : null))),
    num_tokens: col('num_tokens', new arrow.Int64(), rows.map((r, i) => BigInt(i * 17))),
    tags: col('tags', schema.fields[4].type, rows.map((r, i) => (i % 3 ? [i, i + 1] : null))),
  };
  if (withTexts) data.texts = col('texts', strList, rows.map((r) => r.texts));
  return new arrow.Table(schema, data);
}

function write(name, rows, { compression, dictionary, v2, rowGroup, pageBytes, dictBytes, withTexts }) {
  const ipc = arrow.tableToIPC(table(rows, withTexts ?? true), 'stream');
  const wasmTable = pq.Table.fromIPCStream(ipc);
  let props = new pq.WriterPropertiesBuilder()
    .setCompression(compression)
    .setDictionaryEnabled(dictionary)
    .setWriterVersion(v2 ? pq.WriterVersion.V2 : pq.WriterVersion.V1)
    .setMaxRowGroupSize(rowGroup)
    .setCreatedBy('qwen3vl.cpp tests/tools/parquet/make_obelics_parquet.mjs (parquet-wasm 0.7.1)');
  if (!dictionary || dictBytes) props = props.setEncoding(pq.Encoding.PLAIN);  // no DELTA fallback
  if (pageBytes) props = props.setDataPageSizeLimit(pageBytes).setWriteBatchSize(2);
  if (dictBytes) props = props.setDictionaryPageSizeLimit(dictBytes);
  const bytes = pq.writeParquet(wasmTable, props.build());
  const file = path.join(out, name);
  fs.writeFileSync(file, bytes);
  return file;
}

async function expected(file) {
  const buf = fs.readFileSync(file);
  const arrayBuffer = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
  const meta = parquetMetadata(arrayBuffer);
  const rows = await parquetReadObjects({ file: arrayBuffer, columns: ['texts', 'images'], compressors });
  const describe = {
    row_groups: meta.row_groups.map((g) => Number(g.num_rows)),
    codecs: [...new Set(meta.row_groups.flatMap((g) => g.columns.map((c) => c.meta_data.codec)))],
    encodings: [...new Set(meta.row_groups.flatMap((g) => g.columns.flatMap((c) => c.meta_data.encodings)))],
    rows: rows.map((r) => ({ texts: r.texts ?? null, images: r.images ?? null })),
  };
  fs.writeFileSync(file.replace(/\.parquet$/, '.expected.json'), JSON.stringify(describe, null, 1) + '\n');
  return describe;
}

const C = pq.Compression;
const files = [
  write('sample.parquet', sampleRows, { compression: C.SNAPPY, dictionary: true, v2: false, rowGroup: 2 }),
  write('docs-snappy-dict-v1.parquet', docRows(),
    { compression: C.SNAPPY, dictionary: true, v2: false, rowGroup: 7, pageBytes: 64 }),
  write('docs-snappy-plain-v2.parquet', docRows(),
    { compression: C.SNAPPY, dictionary: false, v2: true, rowGroup: 10, pageBytes: 128 }),
  write('docs-zstd-dict-v2.parquet', docRows(),
    { compression: C.ZSTD, dictionary: true, v2: true, rowGroup: 12, pageBytes: 96, dictBytes: 128 }),
  write('docs-zstd-plain-v1.parquet', docRows(),
    { compression: C.ZSTD, dictionary: false, v2: false, rowGroup: 29 }),
  write('docs-uncompressed-dict-v1.parquet', docRows(),
    { compression: C.UNCOMPRESSED, dictionary: true, v2: false, rowGroup: 8 }),
];
// Files our reader must refuse with a named error (no expected JSON: not OBELICS as we read it).
write('bad-gzip.parquet', sampleRows, { compression: C.GZIP, dictionary: true, v2: false, rowGroup: 3 });
write('bad-no-texts.parquet', sampleRows,
  { compression: C.SNAPPY, dictionary: true, v2: false, rowGroup: 3, withTexts: false });
fs.writeFileSync(path.join(out, 'docs.jsonl'),
  docRows().map((r) => JSON.stringify({ texts: r.texts, images: r.images, metadata: r.metadata })).join('\n') + '\n');
for (const f of files) {
  const d = await expected(f);
  console.log(`${path.basename(f)}: ${fs.statSync(f).size} bytes, row groups ${d.row_groups.join('+')},`,
    `codecs ${d.codecs.join(',')}, encodings ${d.encodings.join(',')}`);
}
