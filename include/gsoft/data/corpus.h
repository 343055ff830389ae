#pragma once
// Raw text for pretraining, and the guard that keeps evaluation sentences out of it.
#include <cstddef>
#include <string>
#include <vector>

#include "gsoft/data/tasks.h"

namespace gsoft::data {

// A .csv/.tsv/.jsonl file gives the `table.text_column` of every row (labels are not read); any
// other file gives its paragraphs (separated by blank lines), whitespace-joined.
std::vector<std::string> read_corpus(const std::string& path, const TableFormat& table = {});

// Removes every text that shares a run of `n` words (lower-cased, split on whitespace) with any of
// `held_out`, and returns how many were removed. A held-out text shorter than n words counts
// whole (as a run of words) if it has at least min(n, 6) words; shorter ones are ignored.
size_t remove_overlaps(std::vector<std::string>& texts, const std::vector<std::string>& held_out, size_t n = 8);

}  // namespace gsoft::data
