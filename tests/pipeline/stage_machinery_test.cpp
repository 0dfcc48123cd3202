// The pipeline's machinery below the stages: child processes (exit status, output files,
// death by signal), content fingerprints of inputs and their cache, and progress lines.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <thread>

#include "pipeline/child_process.h"
#include "pipeline/content_hash.h"
#include "pipeline/stage_progress.h"
#include "support/test_support.h"

namespace piquant {
namespace {

namespace fs = std::filesystem;

TEST(ChildProcess, CapturesOutputAndExitStatus) {
  testing::TempDir dir;
  const auto out = (dir / "out.txt").string(), err = (dir / "err.txt").string();
  const ChildResult ok = run_child({"/bin/sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 0"}, out, err);
  EXPECT_EQ(ok.exit_code, 0);
  EXPECT_EQ(testing::read_file(out), "to-stdout\n");
  EXPECT_EQ(testing::read_file(err), "to-stderr\n");
  EXPECT_GT(ok.peak_rss_bytes, 0u);

  int polls = 0;
  const ChildResult failed = run_child({"/bin/sh", "-c", "sleep 0.5; echo second >&2; exit 3"}, out, err, [&] { ++polls; });
  EXPECT_EQ(failed.exit_code, 3);
  EXPECT_GE(polls, 1);
  EXPECT_EQ(testing::read_file(err), "to-stderr\nsecond\n");  // the log is appended to
  EXPECT_EQ(last_line_of(err), "second");

  const ChildResult killed = run_child({"/bin/sh", "-c", "kill -9 $$"}, out, err);
  EXPECT_EQ(killed.exit_code, 128 + 9);
  const ChildResult missing = run_child({(dir / "no-such-program").string()}, out, err);
  EXPECT_EQ(missing.exit_code, 127);
}

TEST(ChildProcess, LastLineSkipsProgressRedraws) {
  testing::TempDir dir;
  testing::write_file(dir / "log", "start\nprogress 1/3\rprogress 2/3\rerror: the real message\n\n");
  EXPECT_EQ(last_line_of((dir / "log").string()), "error: the real message");
  EXPECT_EQ(last_line_of((dir / "none").string()), "");
}

TEST(ContentHash, FilesAndFoldersByContent) {
  testing::TempDir dir;
  testing::write_file(dir / "a.txt", "alpha");
  testing::write_file(dir / "b.txt", "alpha");
  EXPECT_EQ(hash_path_contents((dir / "a.txt").string()), hash_path_contents((dir / "b.txt").string()));
  EXPECT_EQ(hex64(hash_path_contents((dir / "a.txt").string())), hex64(hash_text("alpha")));
  fs::create_directories(dir / "m1/sub");
  fs::create_directories(dir / "m2/sub");
  testing::write_file(dir / "m1/sub/x", "1");
  testing::write_file(dir / "m1/y", "2");
  testing::write_file(dir / "m2/y", "2");  // the same files, written in another order
  testing::write_file(dir / "m2/sub/x", "1");
  EXPECT_EQ(hash_path_contents((dir / "m1").string()), hash_path_contents((dir / "m2").string()));
  testing::write_file(dir / "m2/sub/x", "3");
  EXPECT_NE(hash_path_contents((dir / "m1").string()), hash_path_contents((dir / "m2").string()));
  // Names count, not only bytes: the same contents under another name differ.
  fs::rename(dir / "m2/sub/x", dir / "m2/sub/z");
  testing::write_file(dir / "m2/sub/z", "1");
  EXPECT_NE(hash_path_contents((dir / "m1").string()), hash_path_contents((dir / "m2").string()));
}

TEST(ContentHash, CacheReadsAChangedFileAgain) {
  testing::TempDir dir;
  const auto file = (dir / "model.bin").string(), cache = (dir / "hashes.json").string();
  testing::write_file(file, "weights v1");
  std::string first;
  {
    InputHashCache hashes(cache);
    first = hashes.hash(file);
    EXPECT_EQ(first, hex64(hash_text("weights v1")));
    hashes.save();
  }
  // Same size, new bytes, a later modification time: the cache must not answer the old hash.
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  testing::write_file(file, "weights v2");
  fs::last_write_time(file, fs::last_write_time(file) + std::chrono::seconds(2));
  InputHashCache reloaded(cache);
  EXPECT_EQ(reloaded.hash(file), hex64(hash_text("weights v2")));
  // A damaged cache file costs a re-read, not an error.
  testing::write_file(cache, "{ not json");
  InputHashCache damaged(cache);
  EXPECT_EQ(damaged.hash(file), hex64(hash_text("weights v2")));
}

TEST(StageProgress, LinesAndJsonEvents) {
  testing::TempDir dir;
  const auto path = (dir / "progress.txt").string();
  {
    std::FILE* f = std::fopen(path.c_str(), "w");
    StageProgress lines(ProgressStyle::Lines, f);
    lines.start(2, 7, "finetune");
    lines.update(3.0, std::pair<long long, long long>{5, 10}, "steps");  // nothing between start and end
    lines.done(65.0, "held-out loss 3.1 → 2.9");
    lines.skip(3, 7, "merge", "unchanged");
    StageProgress json(ProgressStyle::Json, f);
    json.start(4, 7, "quantize Q4_K_M");
    json.update(6.0, std::pair<long long, long long>{1, 4}, "tensors");
    json.done(9.5, "");
    StageProgress quiet(ProgressStyle::Quiet, f);
    quiet.start(1, 1, "x");
    quiet.done(1, "y");
    std::fclose(f);
  }
  EXPECT_EQ(testing::read_file(path),
            std::string("[2/7] finetune ...\n") +
            "[2/7] finetune done in 1m05s  held-out loss 3.1 → 2.9\n" +
            "[3/7] merge" + std::string(34 - 11, ' ') + "unchanged\n" +  // labels padded to 34 columns
            "{\"event\":\"start\",\"index\":4,\"step\":\"quantize Q4_K_M\",\"total\":7}\n"
            "{\"done\":1,\"elapsed_s\":6.0,\"event\":\"progress\",\"of\":4,\"step\":\"quantize Q4_K_M\",\"unit\":\"tensors\"}\n"
            "{\"event\":\"done\",\"seconds\":9.5,\"step\":\"quantize Q4_K_M\",\"summary\":\"\"}\n");
  EXPECT_EQ(format_duration(42), "42s");
  EXPECT_EQ(format_duration(3725), "1h02m");
}

}  // namespace
}  // namespace piquant
