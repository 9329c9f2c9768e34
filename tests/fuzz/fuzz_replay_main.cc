// tests/fuzz/fuzz_replay_main.cc: runs a fuzz target without libFuzzer (g++ builds).
//
// Feeds every file of the given corpus folders, then --iterations inputs made by seeded
// mutations of them (bit flips, truncation, splicing, random bytes). The same seed gives the
// same inputs, so a failure replays exactly.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

using Bytes = std::vector<std::uint8_t>;

void add_file(std::vector<Bytes>& corpus, const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    corpus.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

Bytes mutate(const std::vector<Bytes>& corpus, std::mt19937_64& rng) {
    Bytes out = corpus.empty() ? Bytes{} : corpus[rng() % corpus.size()];
    const int steps = 1 + static_cast<int>(rng() % 8);
    for (int s = 0; s < steps; ++s) {
        switch (rng() % 6) {
            case 0:
                if (!out.empty()) out[rng() % out.size()] ^= static_cast<std::uint8_t>(1u << (rng() % 8));
                break;
            case 1:
                if (!out.empty()) out.resize(rng() % out.size());
                break;
            case 2: {
                const std::size_t at = out.empty() ? 0 : rng() % (out.size() + 1);
                const std::size_t n = 1 + rng() % 16;
                for (std::size_t i = 0; i < n; ++i) {
                    out.insert(out.begin() + static_cast<long>(at), static_cast<std::uint8_t>(rng()));
                }
                break;
            }
            case 3:
                if (!corpus.empty()) {
                    const Bytes& other = corpus[rng() % corpus.size()];
                    if (!other.empty()) {
                        const std::size_t from = rng() % other.size();
                        out.insert(out.end(), other.begin() + static_cast<long>(from), other.end());
                    }
                }
                break;
            case 4:
                if (out.size() > 1) {
                    const std::size_t a = rng() % out.size();
                    const std::size_t b = rng() % out.size();
                    std::swap(out[a], out[b]);
                }
                break;
            default: {
                static const char* tokens[] = {"\r\n", "\n", ".", "\r", "\0", "{999999}",
                                               "MAIL FROM:<", "RCPT TO:<", ">", "\"", "(", ")"};
                const char* t = tokens[rng() % (sizeof(tokens) / sizeof(tokens[0]))];
                const std::size_t at = out.empty() ? 0 : rng() % (out.size() + 1);
                out.insert(out.begin() + static_cast<long>(at), t, t + std::max<std::size_t>(1, std::strlen(t)));
                break;
            }
        }
    }
    return out;
}

}  // namespace

int main(int argc, char** argv) {
    long iterations = 20000;
    std::uint64_t seed = 1;
    std::vector<Bytes> corpus;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg.rfind("--iterations=", 0) == 0) {
            iterations = std::stol(arg.substr(13));
        } else if (arg.rfind("--seed=", 0) == 0) {
            seed = std::stoull(arg.substr(7));
        } else if (std::filesystem::is_directory(arg)) {
            for (const auto& e : std::filesystem::directory_iterator(arg)) {
                if (e.is_regular_file()) add_file(corpus, e.path());
            }
        } else if (std::filesystem::is_regular_file(arg)) {
            add_file(corpus, arg);
        }
    }
    for (const Bytes& input : corpus) LLVMFuzzerTestOneInput(input.data(), input.size());
    std::mt19937_64 rng(seed);
    for (long i = 0; i < iterations; ++i) {
        const Bytes input = mutate(corpus, rng);
        LLVMFuzzerTestOneInput(input.data(), input.size());
    }
    std::printf("fuzz replay: %zu corpus inputs, %ld mutations, seed %llu: no crash\n",
                corpus.size(), iterations, static_cast<unsigned long long>(seed));
    return 0;
}
