// GLUE layouts, generic CSV/TSV/JSONL files, bad rows, and the metrics against hand-worked values.
#include <gtest/gtest.h>

#include "gsoft/data/metrics.h"
#include "gsoft/data/tasks.h"
#include "support/helpers.h"

namespace {

using namespace gsoft::data;
using gsoft::test::scratch_dir;
using gsoft::test::write_text;

using gsoft::test::error_of;

TEST(Glue, EveryTaskLayoutReads) {
  const auto d = scratch_dir("glue");
  struct Case { std::string task, file, text; std::string first, pair; float label; };
  const std::vector<Case> cases = {
      {"cola", "train.tsv", "gj04\t1\t\tOur friends won't buy this analysis.\ngj04\t0\t*\tThey drank the pub.\n",
       "Our friends won't buy this analysis.", "", 1},
      {"sst2", "train.tsv", "sentence\tlabel\nhide new secretions \t0\n", "hide new secretions ", "", 0},
      {"mrpc", "train.tsv", "\xEF\xBB\xBFQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\tHe said \"yes\".\tHe agreed.\n",
       "He said \"yes\".", "He agreed.", 1},
      {"stsb", "train.tsv",
       "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
       "0\tmain-captions\tMSRvid\t2012test\t0001\tnone\tnone\tA plane is taking off.\tAn air plane is taking off.\t5.000\n",
       "A plane is taking off.", "An air plane is taking off.", 5},
      {"qqp", "train.tsv", "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n1\t1\t2\tWhy?\tHow?\t0\n", "Why?", "How?", 0},
      {"mnli", "dev_matched.tsv",
       "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\tsentence2_parse\t"
       "sentence1\tsentence2\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label\n"
       "0\t1\t1e\tgov\t( x )\t( y )\t(ROOT x)\t(ROOT y)\tThe cat sat.\tA cat sat.\tneutral\tneutral\tneutral\tneutral\tneutral\tneutral\n",
       "The cat sat.", "A cat sat.", 1},
      {"qnli", "train.tsv", "index\tquestion\tsentence\tlabel\n0\tWho?\tHim.\tnot_entailment\n", "Who?", "Him.", 1},
      {"rte", "train.tsv", "index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\tentailment\n", "A.", "B.", 0},
      {"wnli", "train.tsv", "index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\t1\n", "A.", "B.", 1},
  };
  for (const auto& c : cases) {
    const auto& task = glue_task(c.task);
    write_text(d / c.file, c.text);
    const Dataset ds = read_table((d / c.file).string(), task.format);
    ASSERT_FALSE(ds.examples.empty()) << c.task;
    EXPECT_EQ(ds.examples[0].text, c.first) << c.task;
    EXPECT_EQ(ds.examples[0].text_pair.value_or(""), c.pair) << c.task;
    EXPECT_EQ(ds.examples[0].label, c.label) << c.task;
    EXPECT_EQ(ds.regression, c.task == "stsb");
  }
  EXPECT_EQ(glue_task("mnli").eval_files.size(), 2u);
  EXPECT_EQ(glue_task("cola").metrics[0], Metric::Matthews);
  EXPECT_EQ(glue_task("stsb").metrics[0], Metric::Pearson);
  EXPECT_NE(error_of([] { glue_task("squad"); }).find("known: cola, sst2"), std::string::npos);
}

TEST(Tables, CsvWithBomQuotedNewlinesAndIndexColumns) {
  const auto d = scratch_dir("csv");
  // The layout of the Pang & Lee polarity file: BOM, no header, "label","text", -1/1 labels.
  write_text(d / "p.csv", "\xEF\xBB\xBF\"1\",\"a fine, warm film\"\r\n\"-1\",\"two\nlines, \"\"quoted\"\"\"\n\n\"1\",\"ok\"\n");
  TableFormat f;
  f.header = false;
  f.label_column = "0";
  f.text_column = "1";
  const Dataset ds = read_table((d / "p.csv").string(), f);
  ASSERT_EQ(ds.examples.size(), 3u);
  EXPECT_EQ(ds.label_names, (std::vector<std::string>{"-1", "1"}));  // numeric order
  EXPECT_EQ(ds.examples[0].text, "a fine, warm film");
  EXPECT_EQ(ds.examples[0].label, 1);
  EXPECT_EQ(ds.examples[1].text, "two\nlines, \"quoted\"");
  EXPECT_EQ(ds.examples[1].label, 0);
  EXPECT_EQ(ds.examples[2].line, 5);  // line numbers count the quoted newline and the blank line
}

TEST(Tables, TsvWithHeaderAndJsonl) {
  const auto d = scratch_dir("tsv");
  write_text(d / "t.tsv", "id\tpremise\thypothesis\ty\n1\tA man.\tA person.\tyes\n2\tA dog.\tA cat.\tno\n");
  TableFormat f;
  f.text_column = "premise";
  f.pair_column = "hypothesis";
  f.label_column = "y";
  f.label_names = {"no", "yes"};
  Dataset ds = read_table((d / "t.tsv").string(), f);
  ASSERT_EQ(ds.examples.size(), 2u);
  EXPECT_EQ(*ds.examples[1].text_pair, "A cat.");
  EXPECT_EQ(ds.examples[0].label, 1);

  write_text(d / "r.jsonl", "{\"text\":\"x\",\"text_pair\":\"y\",\"label\":2.5}\n\n{\"text\":\"z\",\"text_pair\":\"w\",\"label\":-1}\n");
  TableFormat j;
  j.pair_column = "text_pair";
  j.regression = true;
  ds = read_table((d / "r.jsonl").string(), j);
  ASSERT_EQ(ds.examples.size(), 2u);
  EXPECT_EQ(ds.num_labels(), 1);
  EXPECT_FLOAT_EQ(ds.examples[0].label, 2.5f);
  EXPECT_EQ(ds.examples[1].line, 3);

  // Inputs without labels, for prediction.
  write_text(d / "p.jsonl", "{\"text\":\"only text\"}\n");
  TableFormat p;
  p.labelled = false;
  EXPECT_EQ(read_table((d / "p.jsonl").string(), p).examples[0].text, "only text");
}

// JSON lines read "text_pair" where a line has it, with no flag; the policy decides what a line
// without one is (issue 19: pairs were dropped silently unless --pair-column was given).
TEST(Tables, JsonlPairsAreReadWhereALineHasOne) {
  const auto d = scratch_dir("jsonl_pairs");
  const auto mixed = (d / "m.jsonl").string();
  write_text(mixed, "{\"text\":\"one\",\"label\":\"a\"}\n"
                    "{\"text\":\"two\",\"text_pair\":\"deux\",\"label\":\"b\"}\n"
                    "\n"
                    "{\"text\":\"three\",\"label\":\"a\"}\n"
                    "{\"text\":\"four\",\"text_pair\":\"\",\"label\":\"b\"}\n");
  TableFormat p;
  p.labelled = false;
  p.pairs = Pairs::AsWritten;
  Dataset ds = read_table(mixed, p);
  ASSERT_EQ(ds.examples.size(), 4u);
  EXPECT_FALSE(ds.examples[0].text_pair.has_value());
  EXPECT_EQ(*ds.examples[1].text_pair, "deux");
  EXPECT_FALSE(ds.examples[2].text_pair.has_value());
  EXPECT_EQ(ds.examples[2].line, 4);
  EXPECT_EQ(*ds.examples[3].text_pair, "");  // an empty second text is still a pair

  // Labelled: all single texts or all pairs; the singles of a mixed file are bad rows, by line.
  std::string e = error_of([&] { read_table(mixed, TableFormat{}); });
  EXPECT_NE(e.find("2 bad row(s)"), std::string::npos) << e;
  EXPECT_NE(e.find("m.jsonl:1: no string field 'text_pair' (other lines are pairs"), std::string::npos) << e;
  EXPECT_NE(e.find("m.jsonl:4: no string field 'text_pair'"), std::string::npos) << e;
  TableFormat skip;
  skip.skip_bad_rows = true;
  ds = read_table(mixed, skip);
  ASSERT_EQ(ds.examples.size(), 2u);
  EXPECT_EQ(ds.examples[0].line, 2);
  EXPECT_EQ(ds.examples[1].line, 5);

  // Another field name: with AsWritten it mixes; labelled, it is required on every line.
  write_text(d / "q.jsonl", "{\"q1\":\"x\",\"q2\":\"y\",\"label\":1}\n{\"q1\":\"z\",\"label\":0}\n");
  p.text_column = "q1";
  p.pair_column = "q2";
  ds = read_table((d / "q.jsonl").string(), p);
  ASSERT_EQ(ds.examples.size(), 2u);
  EXPECT_EQ(*ds.examples[0].text_pair, "y");
  EXPECT_FALSE(ds.examples[1].text_pair.has_value());
  TableFormat q;
  q.text_column = "q1";
  q.pair_column = "q2";
  e = error_of([&] { read_table((d / "q.jsonl").string(), q); });
  EXPECT_NE(e.find("q.jsonl:2: no string field 'q2'"), std::string::npos) << e;

  // A file of single texts stays single; Required refuses it line by line.
  write_text(d / "s.jsonl", "{\"text\":\"x\",\"label\":1}\n");
  EXPECT_FALSE(read_table((d / "s.jsonl").string(), TableFormat{}).examples[0].text_pair.has_value());
  TableFormat r;
  r.pairs = Pairs::Required;
  e = error_of([&] { read_table((d / "s.jsonl").string(), r); });
  EXPECT_NE(e.find("s.jsonl:1: no string field 'text_pair' (the task is one of text pairs)"), std::string::npos) << e;

  // A text_pair that is not a string is a bad row under every policy, null included.
  write_text(d / "n.jsonl", "{\"text\":\"x\",\"text_pair\":null}\n{\"text\":\"y\",\"text_pair\":3}\n");
  p = TableFormat{};
  p.labelled = false;
  p.pairs = Pairs::AsWritten;
  e = error_of([&] { read_table((d / "n.jsonl").string(), p); });
  EXPECT_NE(e.find("n.jsonl:1: field 'text_pair' is null, expected a string"), std::string::npos) << e;
  EXPECT_NE(e.find("n.jsonl:2: field 'text_pair' is 3, expected a string"), std::string::npos) << e;
}

TEST(Tables, BadRowsNameTheirLine) {
  const auto d = scratch_dir("bad");
  write_text(d / "b.tsv", "text\tlabel\ngood\t0\nmissing a column\nbad label\t7\nfine\t1\n");
  TableFormat f;
  f.label_names = {"0", "1"};
  std::string e = error_of([&] { read_table((d / "b.tsv").string(), f); });
  EXPECT_NE(e.find("2 bad row(s)"), std::string::npos) << e;
  EXPECT_NE(e.find("b.tsv:3: expected 2 columns, found 1"), std::string::npos) << e;
  EXPECT_NE(e.find("b.tsv:4: label '7' is not one of the classes (0, 1)"), std::string::npos) << e;
  f.skip_bad_rows = true;
  const Dataset ds = read_table((d / "b.tsv").string(), f);
  EXPECT_EQ(ds.examples.size(), 2u);
  EXPECT_EQ(ds.bad_rows.size(), 2u);

  write_text(d / "q.csv", "text,label\n\"never closed,1\n");
  e = error_of([&] { read_table((d / "q.csv").string(), TableFormat{}); });
  EXPECT_NE(e.find("q.csv:2: quoted field never closed"), std::string::npos) << e;
  e = error_of([&] {
    TableFormat g;
    g.text_column = "sentence";
    read_table((d / "b.tsv").string(), g);
  });
  EXPECT_NE(e.find("no text column 'sentence' in the header (columns: text, label)"), std::string::npos) << e;
  write_text(d / "n.jsonl", "{\"text\":\"a\",\"label\":1}\n{\"text\":5,\"label\":1}\nnot json\n");
  e = error_of([&] { read_table((d / "n.jsonl").string(), TableFormat{}); });
  EXPECT_NE(e.find("n.jsonl:2: no string field 'text'"), std::string::npos) << e;
  EXPECT_NE(e.find("n.jsonl:3: "), std::string::npos) << e;
  write_text(d / "r.tsv", "text\tlabel\na\tfast\n");
  TableFormat r;
  r.regression = true;
  e = error_of([&] { read_table((d / "r.tsv").string(), r); });
  EXPECT_NE(e.find("r.tsv:2: label 'fast' is not a finite number"), std::string::npos) << e;
}

TEST(Tables, SplitByPositionIsStratifiedAndFixed) {
  Dataset d;
  d.label_names = {"neg", "pos"};
  for (int i = 0; i < 40; ++i) d.examples.push_back({"t" + std::to_string(i), std::nullopt, static_cast<float>(i < 20), i + 1});
  const Split s = split_by_position(d);
  ASSERT_EQ(s.train.examples.size(), 32u);
  ASSERT_EQ(s.dev.examples.size(), 4u);
  ASSERT_EQ(s.test.examples.size(), 4u);
  // Class 1 occupies lines 1-20: its 0th and 10th go to test, 1st and 11th to dev.
  EXPECT_EQ(s.test.examples[0].line, 1);
  EXPECT_EQ(s.test.examples[1].line, 11);
  EXPECT_EQ(s.dev.examples[0].line, 2);
  int pos = 0;
  for (const auto& e : s.test.examples) pos += e.label == 1;
  EXPECT_EQ(pos, 2);
  EXPECT_EQ(s.train.label_names, d.label_names);
}

TEST(Metrics, HandWorkedValues) {
  // scikit-learn's documented example: MCC of [+1,+1,+1,-1] vs [+1,-1,+1,+1] is -1/3.
  EXPECT_NEAR(matthews_corrcoef({1, 0, 1, 1}, {1, 1, 1, 0}), -1.0 / 3.0, 1e-12);
  EXPECT_NEAR(matthews_corrcoef({0, 1, 2, 0}, {0, 1, 2, 0}), 1.0, 1e-12);
  EXPECT_EQ(matthews_corrcoef({1, 1, 1}, {1, 0, 1}), 0.0);  // constant prediction: undefined -> 0
  EXPECT_NEAR(accuracy({1, 0, 1, 1}, {1, 1, 1, 0}), 0.5, 1e-12);
  EXPECT_NEAR(f1_binary({1, 1, 0, 0}, {1, 0, 1, 0}), 0.5, 1e-12);
  EXPECT_NEAR(pearson({1, 2, 3}, {2, 4, 6}), 1.0, 1e-12);
  EXPECT_NEAR(pearson({1, 2, 3}, {3, 2, 1}), -1.0, 1e-12);
  // Ties take their average rank: ranks (1, 2.5, 2.5, 4) and (1, 3, 2, 4) correlate 4.5/sqrt(22.5).
  EXPECT_NEAR(spearman({1, 2, 2, 3}, {10, 30, 20, 40}), 4.5 / std::sqrt(22.5), 1e-12);
  const auto m = compute_metrics({Metric::Pearson, Metric::Spearman}, {1, 2, 3}, {1, 2, 4});
  EXPECT_EQ(m.size(), 2u);
  EXPECT_NEAR(m.at("spearman"), 1.0, 1e-12);
  EXPECT_THROW(accuracy({1}, {1, 0}), std::invalid_argument);
}

}  // namespace
