// LipConvNet data and training: IDX (plain and gzipped) and CIFAR binaries read back what was
// written and reject truncated or foreign files by name; augmentation is reproducible; SGD equals
// torch::optim::SGD; training learns, resumes to the same weights, and a saved model reloads.
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <zlib.h>

#include "gsoft/data/images.h"
#include "gsoft/train/lipconv.h"
#include "gsoft/train/optim.h"
#include "support/helpers.h"

namespace {

using namespace gsoft;
namespace fs = std::filesystem;

using test::idx_bytes;

void write_gz(const fs::path& p, const std::string& bytes) {
  gzFile f = gzopen(p.string().c_str(), "wb");
  ASSERT_TRUE(f);
  gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
  gzclose(f);
}

using test::error_of;


TEST(ImageData, IdxPlainAndGzippedReadBackAndBadFilesAreNamed) {
  const fs::path d = test::scratch_dir("idx");
  std::vector<uint8_t> pixels(3 * 2 * 4);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint8_t>(i * 7);
  const std::string images = idx_bytes({3, 2, 4}, pixels), labels = idx_bytes({3}, {4, 0, 9});
  test::write_text(d / "img", images);
  test::write_text(d / "lab", labels);
  write_gz(d / "img.gz", images);
  write_gz(d / "lab.gz", labels);
  for (const char* suffix : {"", ".gz"}) {
    const data::ImageDataset ds = data::read_idx((d / "img").string() + suffix, (d / "lab").string() + suffix);
    ASSERT_EQ(ds.images.sizes(), (std::vector<int64_t>{3, 1, 2, 4}));
    EXPECT_EQ(ds.images[1][0][1][2].item<int>(), pixels[8 + 6]);
    EXPECT_TRUE(torch::equal(ds.labels, torch::tensor({4, 0, 9}, torch::kLong)));
  }
  // Truncated pixels, a gzipped truncation, a wrong magic, a label count mismatch, a bad label.
  test::write_text(d / "cut", images.substr(0, images.size() - 5));
  EXPECT_HAS(error_of([&] { data::read_idx((d / "cut").string(), (d / "lab").string()); }), "truncated: the header announces 3 images of 2x4 (24 bytes), but the file holds at most 19");
  write_gz(d / "cut.gz", images.substr(0, images.size() - 5));
  EXPECT_HAS(error_of([&] { data::read_idx((d / "cut.gz").string(), (d / "lab").string()); }), "cut.gz: truncated");
  EXPECT_HAS(error_of([&] { data::read_idx((d / "lab").string(), (d / "lab").string()); }), "expected 0 0 8 3");
  test::write_text(d / "lab2", idx_bytes({2}, {1, 2}));
  EXPECT_HAS(error_of([&] { data::read_idx((d / "img").string(), (d / "lab2").string()); }), "2 labels for the 3 images");
  test::write_text(d / "lab3", idx_bytes({3}, {1, 2, 10}));
  EXPECT_HAS(error_of([&] { data::read_idx((d / "img").string(), (d / "lab3").string()); }), "label 10 found, expected labels 0..9");
  test::write_text(d / "huge", idx_bytes({4000000000u, 28, 28}, {}));
  EXPECT_HAS(error_of([&] { data::read_idx((d / "huge").string(), (d / "lab").string()); }), "4000000000 items");
  test::write_text(d / "junk.gz", "not gzip at all");  // zlib reads non-gzip data as-is: a bad magic
  EXPECT_HAS(error_of([&] { data::read_idx((d / "junk.gz").string(), (d / "lab").string()); }), "magic bytes");
}

TEST(ImageData, CifarBinariesReadBackAndTruncationIsNamed) {
  const fs::path d = test::scratch_dir("cifar");
  auto records = [](int n, int label_bytes, int base) {
    std::string s;
    for (int i = 0; i < n; ++i) {
      if (label_bytes == 2) s += static_cast<char>(i % 20);  // coarse label
      s += static_cast<char>(base + i);
      for (int p = 0; p < 3072; ++p) s += static_cast<char>((p + i) & 0xFF);
    }
    return s;
  };
  for (int b = 1; b <= 5; ++b) test::write_text(d / ("data_batch_" + std::to_string(b) + ".bin"), records(2, 1, b));
  test::write_text(d / "test_batch.bin", records(3, 1, 0));
  const data::ImageDataset train = data::read_cifar10(d.string(), true);
  ASSERT_EQ(train.images.sizes(), (std::vector<int64_t>{10, 3, 32, 32}));
  EXPECT_TRUE(torch::equal(train.labels, torch::tensor({1, 2, 2, 3, 3, 4, 4, 5, 5, 6}, torch::kLong)));
  EXPECT_EQ(train.images[1][0][0][0].item<int>(), 1);  // pixel p of record i is (p + i) & 255, channel-major
  EXPECT_EQ(train.images[1][2][31][31].item<int>(), (3071 + 1) & 0xFF);
  EXPECT_EQ(data::read_cifar10(d.string(), false).size(), 3);

  const fs::path c100 = d / "cifar-100-binary";
  fs::create_directories(c100);
  test::write_text(c100 / "test.bin", records(4, 2, 95));
  const data::ImageDataset t100 = data::load_image_dataset("cifar100", d.string(), false);
  EXPECT_EQ(t100.num_classes, 100);
  EXPECT_TRUE(torch::equal(t100.labels, torch::tensor({95, 96, 97, 98}, torch::kLong)));

  test::write_text(d / "test_batch.bin", records(3, 1, 0).substr(0, 3073 * 2 + 100));
  EXPECT_HAS(error_of([&] { data::read_cifar10(d.string(), false); }), "is not a whole number of 3073-byte CIFAR-10 records");
  test::write_text(d / "test_batch.bin", records(1, 1, 10));
  EXPECT_HAS(error_of([&] { data::read_cifar10(d.string(), false); }), "has label 10, expected 0..9");
  EXPECT_HAS(error_of([&] { data::read_cifar100((d / "nowhere").string(), true); }), "no train.bin");
  EXPECT_HAS(error_of([&] { data::load_image_dataset("svhn", d.string(), true); }), "unknown dataset 'svhn'");
}

TEST(ImageData, PaddingNormalisationAndReproducibleAugmentation) {
  data::ImageDataset d;
  d.name = "t";
  d.images = torch::full({2, 1, 28, 28}, 255, torch::kUInt8);
  d.mean = {0.5};
  d.std = {0.25};
  const data::ImageDataset p = data::pad_images(d, 32);
  ASSERT_EQ(p.images.sizes(), (std::vector<int64_t>{2, 1, 32, 32}));
  EXPECT_EQ(p.images.sum().item<int64_t>(), 2 * 28 * 28 * 255);
  EXPECT_EQ(p.images[0][0][1][1].item<int>(), 0);
  EXPECT_EQ(p.images[0][0][2][2].item<int>(), 255);
  EXPECT_NEAR(data::normalize_images(p.images, d.mean, d.std)[0][0][2][2].item<double>(), 2.0, 1e-6);
  const torch::Tensor x = torch::randint(0, 256, {4, 3, 8, 8}, torch::kLong).to(torch::kUInt8);
  const torch::Tensor a = data::augment_images(x, 2, true, 7), b = data::augment_images(x, 2, true, 7);
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_FALSE(torch::equal(a, data::augment_images(x, 2, true, 8)));
  EXPECT_TRUE(torch::equal(data::augment_images(x, 0, false, 7), x));
}

TEST(Optim, SgdMatchesTorchSgd) {
  torch::manual_seed(0);
  const torch::Tensor w0 = torch::randn({5, 3}, torch::kDouble);
  torch::Tensor a = w0.clone().requires_grad_(true), b = w0.clone().requires_grad_(true);
  SGD ours({{"w", a}}, SGDOptions{0.1, 0.9, 5e-4});
  torch::optim::SGD ref({b}, torch::optim::SGDOptions(0.1).momentum(0.9).weight_decay(5e-4));
  for (int step = 0; step < 5; ++step) {
    const torch::Tensor target = torch::randn({5, 3}, torch::kDouble);
    const double factor = multistep_schedule(step, 5, {0.5, 0.75}, 0.1);
    ours.zero_grad();
    (a - target).square().sum().backward();
    ours.step(factor);
    ref.zero_grad();
    (b - target).square().sum().backward();
    static_cast<torch::optim::SGDOptions&>(ref.param_groups()[0].options()).lr(0.1 * factor);
    ref.step();
  }
  EXPECT_TRUE(torch::allclose(a, b, 1e-12, 1e-12));
  EXPECT_EQ(multistep_schedule(2, 4, {0.5, 0.75}, 0.1), 0.1);
  EXPECT_NEAR(multistep_schedule(3, 4, {0.5, 0.75}, 0.1), 0.01, 1e-15);
}

// Two classes a tiny LipConvNet can tell apart: bright left half or bright right half.
data::ImageDataset halves(int n, uint64_t seed) {
  torch::manual_seed(seed);
  data::ImageDataset d;
  d.name = "halves";
  d.num_classes = 2;
  d.labels = torch::randint(0, 2, {n}, torch::kLong);
  torch::Tensor img = torch::randint(0, 60, {n, 1, 32, 32}, torch::kLong);
  for (int i = 0; i < n; ++i) img[i].narrow(2, d.labels[i].item<int64_t>() * 16, 16).add_(180);
  d.images = img.clamp(0, 255).to(torch::kUInt8);
  d.mean = {0.4};
  d.std = {0.3};
  return d;
}

conv::LipConvNetOptions tiny_net() {
  return conv::LipConvNetOptions().conv(conv::ConvKind::GSSOC).groups1(2).groups2(1).depth(5).init_channels(4)
      .in_channels(1).num_classes(2).init_iters(5);
}

TEST(LipConvTrain, LearnsCertifiesResumesExactlyAndReloads) {
  const data::ImageDataset train = halves(64, 1), test = halves(32, 2);
  LipConvTrainOptions o;
  o.epochs = 4;
  o.batch_size = 16;
  o.lr = 0.05;
  o.crop_padding = 0;
  o.flip = false;
  o.eps = {0.01, 0.05};
  const fs::path whole = test::scratch_dir("lipconv_whole"), parts = test::scratch_dir("lipconv_parts");
  o.out_dir = whole.string();
  torch::manual_seed(3);
  conv::LipConvNet a(tiny_net());
  const LipConvResult ra = train_lipconvnet(*a, train, test, o);
  ASSERT_EQ(ra.epochs.size(), 4u);
  EXPECT_GT(ra.epochs.back().test.accuracy, 0.9);
  EXPECT_LT(ra.epochs.back().train_loss, ra.epochs.front().train_loss);
  EXPECT_GE(ra.epochs.back().test.robust_accuracy[0], ra.epochs.back().test.robust_accuracy[1]);
  EXPECT_TRUE(fs::exists(whole / "best" / "model.safetensors"));

  // Stop after 6 of 16 steps (mid-epoch), then resume in a fresh network.
  o.out_dir = parts.string();
  torch::manual_seed(3);
  conv::LipConvNet b(tiny_net());
  TrainCallbacks stop;
  int64_t steps = 0;
  stop.on_step = [&](const StepInfo&) { ++steps; };
  stop.should_stop = [&] { return steps == 6; };
  EXPECT_TRUE(train_lipconvnet(*b, train, test, o, stop).interrupted);
  torch::manual_seed(99);
  conv::LipConvNet c(tiny_net());
  const LipConvResult rc = train_lipconvnet(*c, train, test, o);
  EXPECT_EQ(rc.start_step, 6);
  for (const auto& p : a->named_parameters())
    EXPECT_TRUE(torch::allclose(p.value(), c->named_parameters()[p.key()], 1e-5, 1e-6)) << p.key();

  // The saved last model certifies exactly as the trained one.
  LoadedLipConvNet m = load_lipconvnet(whole.string());
  const conv::CertifiedAccuracy x = evaluate_lipconvnet(*m.net, test, o.eps), y = evaluate_lipconvnet(*a, test, o.eps);
  EXPECT_EQ(x.accuracy, y.accuracy);
  EXPECT_NEAR(x.mean_certificate, y.mean_certificate, 1e-6);

  // Another architecture in the same run directory is refused, naming the option.
  o.out_dir = whole.string();
  conv::LipConvNet other(tiny_net().groups2(2));
  EXPECT_HAS(error_of([&] { train_lipconvnet(*other, train, test, o); }), "architecture");
}

}  // namespace
