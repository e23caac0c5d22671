// Fused lookups for the quantized embeddings: gather the rows asked for and decode them in one pass
// over the output. The torch path makes one pass per op (gather, unpack, convert, scale), and on a
// CPU those passes over a 42 MB output are what a lookup costs. Arithmetic is the torch path's, op
// for op, so both give identical floats (shape-gain PQ: its norm is summed in another order, so up to
// a last-bit rounding difference). Built on first use by embcompress/kernels.py.
#include <torch/extension.h>
#if defined(__F16C__) || defined(__AVX512F__)
#include <immintrin.h>
#endif
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

namespace {

void check_ids(const torch::Tensor& ids, int64_t rows) {
  TORCH_CHECK(ids.dtype() == torch::kInt64 && ids.is_contiguous(), "ids must be contiguous int64");
  if (ids.numel() == 0) return;
  auto lo = ids.min().item<int64_t>(), hi = ids.max().item<int64_t>();
  TORCH_CHECK_INDEX(lo >= 0 && hi < rows, "index out of range in self: ids span [", lo, ", ", hi, "] for ", rows,
                    " rows");
}

// The output: a new (n, dim) tensor when `out` is empty, else rows `rows` of `out` (row r of the
// lookup goes to out[rows[r]], or is added to it with add_to), so a caller combining several modules
// writes each row once.
float* output_rows(torch::Tensor& out, const torch::Tensor& rows, int64_t n, int64_t dim, const int64_t** dest,
                   bool add_to) {
  *dest = nullptr;
  if (out.numel() == 0) {
    TORCH_CHECK(!add_to, "adding to rows needs an output");
    out = torch::empty({n, dim}, torch::kFloat32);
  } else {
    TORCH_CHECK(out.dtype() == torch::kFloat32 && out.is_contiguous() && out.dim() == 2 && out.size(1) == dim,
                "out must be a contiguous float32 (rows, ", dim, ") tensor");
    TORCH_CHECK(rows.numel() == n, "rows must give one output row per id");
    check_ids(rows, out.size(0));
    *dest = rows.data_ptr<int64_t>();
  }
  return out.data_ptr<float>();
}

// The k-bit codes' tensors as int.py stores them; returns whether there are offsets.
bool check_int_codes(const torch::Tensor& packed, const torch::Tensor& scales, const torch::Tensor& offsets,
                     int64_t bits) {
  TORCH_CHECK(bits >= 1 && bits <= 8, "bits must be between 1 and 8");
  TORCH_CHECK(packed.dtype() == torch::kUInt8 && packed.is_contiguous() && packed.dim() == 2, "bad packed codes");
  TORCH_CHECK(scales.dtype() == torch::kHalf && scales.is_contiguous() && scales.size(0) == packed.size(0),
              "bad scales");
  const bool has_offsets = offsets.numel() > 0;
  TORCH_CHECK(!has_offsets || (offsets.dtype() == torch::kHalf && offsets.is_contiguous() &&
                               offsets.sizes() == scales.sizes()), "bad offsets");
  return has_offsets;
}

// Writes a decoded value, or adds it to what the row holds (a low-rank part decoded first).
inline void put(float* v, float x, bool add_to) { *v = add_to ? *v + x : x; }

const int64_t kGrain = 64;  // rows a task: a few hundred KB of output

// Each value is written once: table value × its group's scale (+ offset), in the torch path's order.
template <int kPerByte>
void decode_rows(const uint8_t* codes, const at::Half* sc, const at::Half* off, const int64_t* id, const float* table,
                 float* o, const int64_t* dest, bool add_to, int64_t n, int64_t row_bytes, int64_t groups,
                 int64_t group) {
  const int64_t group_bytes = group / kPerByte;
  at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      float* v = o + (dest ? dest[r] : r) * row_bytes * kPerByte;
      for (int64_t g = 0; g < groups; ++g) {
        const uint8_t* p = codes + id[r] * row_bytes + g * group_bytes;
        const float s = static_cast<float>(sc[id[r] * groups + g]);
        if (off) {
          const float a = static_cast<float>(off[id[r] * groups + g]);
          for (int64_t b = 0; b < group_bytes; ++b)
            for (int j = 0; j < kPerByte; ++j) put(v++, table[p[b] * kPerByte + j] * s + a, add_to);
        } else {
          for (int64_t b = 0; b < group_bytes; ++b)
            for (int j = 0; j < kPerByte; ++j) put(v++, table[p[b] * kPerByte + j] * s, add_to);
        }
      }
    }
  });
}

// Widths that do not divide 8 (3, 5, 6, 7): value i is bits [i·bits, (i+1)·bits) of the row's
// little-endian bit stream (pack_bits' order), so it spans at most two bytes.
void decode_rows_any_bits(const uint8_t* codes, const at::Half* sc, const at::Half* off, const int64_t* id,
                          const float* table, float* o, const int64_t* dest, bool add_to, int64_t n, int64_t row_bytes,
                          int64_t groups, int64_t group, int64_t bits) {
  const int64_t dim = groups * group;
  const unsigned mask = (1u << bits) - 1;
  at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const uint8_t* p = codes + id[r] * row_bytes;
      float* v = o + (dest ? dest[r] : r) * dim;
      for (int64_t g = 0; g < groups; ++g) {
        const float s = static_cast<float>(sc[id[r] * groups + g]);
        const float a = off ? static_cast<float>(off[id[r] * groups + g]) : 0.0f;
        for (int64_t i = g * group; i < (g + 1) * group; ++i) {
          const int64_t bit = i * bits, byte = bit >> 3;
          unsigned word = p[byte];
          if (byte + 1 < row_bytes) word |= static_cast<unsigned>(p[byte + 1]) << 8;
          const float x = table[(word >> (bit & 7)) & mask] * s;
          put(v + i, off ? x + a : x, add_to);
        }
      }
    }
  });
}

}  // namespace

// packed (V, dim·bits/8) uint8, scales (V, G) fp16, offsets (V, G) fp16 or empty, ids (N,) int64 →
// (N, dim) float32 with value = (code · mul + add) · scale[group] (+ offset[group]); bits 1 … 8.
torch::Tensor gather_int(torch::Tensor packed, torch::Tensor scales, torch::Tensor offsets, torch::Tensor ids,
                         int64_t bits, int64_t group, double mul, double add, torch::Tensor out, torch::Tensor rows,
                         bool add_to) {
  const bool has_offsets = check_int_codes(packed, scales, offsets, bits);
  check_ids(ids, packed.size(0));
  const int64_t row_bytes = packed.size(1), groups = scales.size(1), n = ids.numel(), dim = groups * group;
  TORCH_CHECK(dim * bits == row_bytes * 8, "groups × group size × bits must fill the packed row");
  const bool whole = 8 % bits == 0;
  const int64_t per_byte = whole ? 8 / bits : 1;
  TORCH_CHECK(group % per_byte == 0, "a group must hold whole bytes");
  const int64_t* dest;
  float* o = output_rows(out, rows, n, dim, &dest, add_to);
  // every byte's decoded values (every code's, for widths that do not divide 8): the inner loop is a copy
  std::vector<float> table(256 * per_byte);
  for (int c = 0; c < 256; ++c)
    for (int64_t j = 0; j < per_byte; ++j)
      table[c * per_byte + j] = static_cast<float>((c >> (j * bits)) & ((1 << bits) - 1)) * static_cast<float>(mul) +
                                static_cast<float>(add);
  const uint8_t* codes = packed.data_ptr<uint8_t>();
  const at::Half* sc = scales.data_ptr<at::Half>();
  const at::Half* off = has_offsets ? offsets.data_ptr<at::Half>() : nullptr;
  const int64_t* id = ids.data_ptr<int64_t>();
  if (!whole) {
    decode_rows_any_bits(codes, sc, off, id, table.data(), o, dest, add_to, n, row_bytes, groups, group, bits);
    return out;
  }
  switch (per_byte) {  // a compile-time count of values a byte lets the inner loop unroll
    case 1: decode_rows<1>(codes, sc, off, id, table.data(), o, dest, add_to, n, row_bytes, groups, group); break;
    case 2: decode_rows<2>(codes, sc, off, id, table.data(), o, dest, add_to, n, row_bytes, groups, group); break;
    case 4: decode_rows<4>(codes, sc, off, id, table.data(), o, dest, add_to, n, row_bytes, groups, group); break;
    default: decode_rows<8>(codes, sc, off, id, table.data(), o, dest, add_to, n, row_bytes, groups, group);
  }
  return out;
}

// llama.cpp blocks of 32 values, (V, blocks·bytes) uint8 → (N, dim) float32.
// Q8_0: fp16 scale d, 32 int8 q; value q·d. Q4_0: fp16 d, 16 bytes; value j is (low nibble of byte j − 8)·d,
// value j + 16 is (high nibble − 8)·d.
torch::Tensor gather_gguf(torch::Tensor blocks, torch::Tensor ids, std::string qtype, torch::Tensor out,
                          torch::Tensor rows, bool add_to) {
  TORCH_CHECK(blocks.dtype() == torch::kUInt8 && blocks.is_contiguous() && blocks.dim() == 2, "bad blocks");
  TORCH_CHECK(qtype == "Q4_0" || qtype == "Q8_0", "no kernel for ", qtype);
  check_ids(ids, blocks.size(0));
  const bool q4 = qtype == "Q4_0";
  const int64_t block_bytes = q4 ? 18 : 34, row_bytes = blocks.size(1), nblocks = row_bytes / block_bytes;
  TORCH_CHECK(nblocks * block_bytes == row_bytes, "row bytes are not whole blocks");
  const int64_t dim = nblocks * 32, n = ids.numel();
  const int64_t* dest;
  float* o = output_rows(out, rows, n, dim, &dest, add_to);
  const uint8_t* src = blocks.data_ptr<uint8_t>();
  const int64_t* id = ids.data_ptr<int64_t>();
  at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const uint8_t* row = src + id[r] * row_bytes;
      for (int64_t k = 0; k < nblocks; ++k) {
        const uint8_t* blk = row + k * block_bytes;
        at::Half d_half;
        std::memcpy(&d_half, blk, 2);
        const float d = static_cast<float>(d_half);
        float* v = o + (dest ? dest[r] : r) * dim + k * 32;
        if (q4) {
          for (int j = 0; j < 16; ++j) {
            put(v + j, (static_cast<float>(blk[2 + j] & 15) - 8.0f) * d, add_to);
            put(v + j + 16, (static_cast<float>(blk[2 + j] >> 4) - 8.0f) * d, add_to);
          }
        } else {
          for (int j = 0; j < 32; ++j) put(v + j, static_cast<float>(static_cast<int8_t>(blk[2 + j])) * d, add_to);
        }
      }
    }
  });
  return out;
}

// Product quantization: codes (V, S) uint8 index rows of table (S·256, sub) float32, subspace s at rows
// s·256 … s·256+255. With norms (V,) fp16 and sq (S·256,) float32, the |centroid|² of every table row,
// the decoded row is rescaled to its stored norm (shape-gain), its norm summed from sq in subspace order.
torch::Tensor gather_pq(torch::Tensor codes, torch::Tensor table, torch::Tensor sq, torch::Tensor norms,
                        torch::Tensor ids, torch::Tensor out, torch::Tensor rows, bool add_to) {
  TORCH_CHECK(codes.dtype() == torch::kUInt8 && codes.is_contiguous() && codes.dim() == 2, "bad codes");
  const int64_t subspaces = codes.size(1), n = ids.numel();
  TORCH_CHECK(table.dtype() == torch::kFloat32 && table.is_contiguous() && table.dim() == 2 &&
              table.size(0) == subspaces * 256, "bad codebook table");
  const bool gain = norms.numel() > 0;
  TORCH_CHECK(!gain || (norms.dtype() == torch::kHalf && norms.numel() == codes.size(0) &&
                        sq.dtype() == torch::kFloat32 && sq.numel() == table.size(0)), "bad norms");
  check_ids(ids, codes.size(0));
  const int64_t sub = table.size(1), dim = subspaces * sub;
  const int64_t* dest;
  float* o = output_rows(out, rows, n, dim, &dest, add_to);
  const uint8_t* c = codes.data_ptr<uint8_t>();
  const float* t = table.data_ptr<float>();
  const float* q = gain ? sq.data_ptr<float>() : nullptr;
  const at::Half* nm = gain ? norms.data_ptr<at::Half>() : nullptr;
  const int64_t* id = ids.data_ptr<int64_t>();
  at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const uint8_t* code = c + id[r] * subspaces;
      float* v = o + (dest ? dest[r] : r) * dim;
      if (gain) {
        float norm2 = 0.0f;
        for (int64_t s = 0; s < subspaces; ++s) norm2 += q[s * 256 + code[s]];
        const float factor = static_cast<float>(nm[id[r]]) / std::max(std::sqrt(norm2), 1e-12f);
        for (int64_t s = 0; s < subspaces; ++s) {
          const float* centroid = t + (s * 256 + code[s]) * sub;
          for (int64_t j = 0; j < sub; ++j) put(v++, centroid[j] * factor, add_to);
        }
      } else {
        for (int64_t s = 0; s < subspaces; ++s) {
          const float* centroid = t + (s * 256 + code[s]) * sub;
          for (int64_t j = 0; j < sub; ++j) put(v++, centroid[j], add_to);
        }
      }
    }
  });
  return out;
}

// The tied head straight from the codes: logits (T, V) = hidden (T, dim) · Wᵀ with W's row r decoded one
// row at a time into a buffer that stays in L1, never as a matrix. Per group g of row r:
// logit += scale · (h_g · (code · mul + add)) (+ offset · Σ h_g). At batch 1 the head is memory-bound: it
// reads dim·bits/8 + a few bytes a row instead of the dense row's 4·dim, which is where its speed comes from.
namespace {

// One row's logits for T hidden vectors, codes of BITS bits (dividing 8) read straight from the bytes.
// hp is hidden regrouped so that the values byte b of a group holds at bit offset j·BITS sit at
// hp[(g·kPerByte + j)·group_bytes + b]: each inner loop is then a contiguous, vectorizable pass over the
// group's bytes. Per group: dot = h_g · codes, then scale · (mul · dot + add · Σh_g) (+ offset · Σh_g).
inline float half_to_float(at::Half x) {
#ifdef __F16C__
  return _cvtsh_ss(x.x);  // one instruction; c10's portable conversion is a dozen
#else
  return static_cast<float>(x);
#endif
}

// One row's logits for T hidden vectors, codes of BITS bits read straight from the bytes, GB bytes a group.
// hp is hidden regrouped so that the value byte b of a group holds at bit offset j·BITS sits at
// hp[(g·kPerByte + j)·GB + b]: the inner loop is one GB-wide vector step per group, partial sums kept per
// lane until the row ends. Per group: scale · (mul · h_g·codes + add · Σh_g) (+ offset · Σh_g).
template <int BITS, int GB>
void int_row_logits(const uint8_t* p, const at::Half* sc, const at::Half* off, const float* hp, const float* hsum,
                    float* o, int64_t T, int64_t rows, int64_t groups, float mul, float add) {
  constexpr int kPerByte = 8 / BITS;
  constexpr unsigned kMask = (1u << BITS) - 1;
  const int64_t dim = groups * GB * kPerByte;
  // at most 16 lanes of partial sums: with 32 (int8 or int4 in groups of 64) gcc no longer keeps them in
  // registers and the loop ran 6× slower (measured on SmolLM2's head)
  constexpr int kLanes = GB < 16 ? GB : 16;
  for (int64_t t = 0; t < T; ++t) {
    const float* ht = hp + t * dim;
    float acc[kLanes] = {};
    float rest = 0.0f;
    for (int64_t g = 0; g < groups; ++g) {
      const uint8_t* pg = p + g * GB;
      const float* hg = ht + g * kPerByte * GB;
      const float s = half_to_float(sc[g]);
      for (int c = 0; c < GB; c += kLanes) {
#pragma omp simd
        for (int l = 0; l < kLanes; ++l) {
          const unsigned byte = pg[c + l];
          float part = 0.0f;
          for (int j = 0; j < kPerByte; ++j)
            part += hg[j * GB + c + l] * static_cast<float>((byte >> (j * BITS)) & kMask);
          acc[l] += s * part;
        }
      }
      const float hs = hsum[t * groups + g];
      rest += s * add * hs;
      if (off) rest += half_to_float(off[g]) * hs;
    }
    float dot = 0.0f;
    for (int l = 0; l < kLanes; ++l) dot += acc[l];
    o[t * rows] = mul * dot + rest;
  }
}

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)  // masked 128/256-bit loads
// The same with AVX-512 intrinsics, NT hidden vectors at a time: each 16-byte slice of a group is widened
// once to 16 int32 lanes and its kPerByte code planes turned into floats (4 bits: one permute from the
// table 0..15, which reads only an index's low 4 bits, so no mask), then every vector's partial sums take
// them from registers. gcc's vectorization of the loop above ran at ~5 GMAC/s on two cores (SmolLM2's
// int4 head 7× its bandwidth floor) and re-read the codes for each hidden vector.
template <int BITS, int GB, int NT>
void int_row_logits_avx512(const uint8_t* p, const float* s, const float* hp, float* o, int64_t rows, int64_t groups,
                           int64_t dim, float mul, const __m512* rest) {
  static_assert(GB % 16 == 0, "16-byte slices");
  constexpr int kPerByte = 8 / BITS;
  const __m512i mask = _mm512_set1_epi32((1 << BITS) - 1);
  const __m512 table = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  __m512 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t g = 0; g < groups; ++g) {
    const __m512 sg = _mm512_set1_ps(s[g]);
    for (int c = 0; c < GB; c += 16) {
      const __m512i x = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + g * GB + c)));
      __m512 q[kPerByte];
      for (int j = 0; j < kPerByte; ++j) {
        const __m512i plane = j ? _mm512_srli_epi32(x, j * BITS) : x;
        q[j] = BITS == 4 ? _mm512_permutexvar_ps(plane, table)
                         : _mm512_cvtepi32_ps(BITS == 8 ? plane : _mm512_and_si512(plane, mask));
      }
      for (int t = 0; t < NT; ++t) {
        const float* hg = hp + t * dim + g * kPerByte * GB + c;
        __m512 part = _mm512_mul_ps(q[0], _mm512_loadu_ps(hg));
        for (int j = 1; j < kPerByte; ++j) part = _mm512_fmadd_ps(q[j], _mm512_loadu_ps(hg + j * GB), part);
        acc[t] = _mm512_fmadd_ps(part, sg, acc[t]);
      }
    }
  }
  const __m512 m = _mm512_set1_ps(mul);
  for (int t = 0; t < NT; ++t) o[t * rows] = _mm512_reduce_add_ps(_mm512_fmadd_ps(acc[t], m, rest[t]));
}

#if defined(__AVX512VBMI__)
// Widths that do not divide 8 (3, 5, 6, 7): sixteen values of BITS bits are 2·BITS whole bytes, so one byte
// permute puts the two bytes holding value k into lane k, a per-lane shift and a mask cut it out. hidden
// is in its natural order here.
template <int BITS, int NT>
void int_row_logits_stream_avx512(const uint8_t* p, const float* s, const float* h, float* o, int64_t rows,
                                  int64_t groups, int64_t group, int64_t dim, float mul, const __m512* rest) {
  alignas(64) uint8_t idx[64];
  alignas(64) uint32_t shift[16];
  for (int k = 0; k < 16; ++k) {
    const int bit = k * BITS;
    idx[4 * k] = bit >> 3;
    idx[4 * k + 1] = (bit >> 3) + 1;
    idx[4 * k + 2] = idx[4 * k + 3] = 0;  // zeroed by the permute's mask
    shift[k] = bit & 7;
  }
  const __m512i index = _mm512_load_si512(idx), shifts = _mm512_load_si512(shift);
  const __m512i mask = _mm512_set1_epi32((1 << BITS) - 1);
  constexpr __mmask64 kTwoBytes = 0x3333333333333333ull;
  constexpr __mmask16 kBytes = static_cast<__mmask16>((1u << (2 * BITS)) - 1);
  __m512 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t g = 0; g < groups; ++g) {
    const __m512 sg = _mm512_set1_ps(s[g]);
    __m512 part[NT];
    for (int t = 0; t < NT; ++t) part[t] = _mm512_setzero_ps();
    for (int64_t c = 0; c < group; c += 16) {
      const int64_t i = g * group + c;
      const __m512i bytes = _mm512_castsi128_si512(_mm_maskz_loadu_epi8(kBytes, p + i / 8 * BITS));
      const __m512i lanes = _mm512_maskz_permutexvar_epi8(kTwoBytes, index, bytes);
      const __m512 q = _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srlv_epi32(lanes, shifts), mask));
      for (int t = 0; t < NT; ++t) part[t] = _mm512_fmadd_ps(q, _mm512_loadu_ps(h + t * dim + i), part[t]);
    }
    for (int t = 0; t < NT; ++t) acc[t] = _mm512_fmadd_ps(part[t], sg, acc[t]);
  }
  const __m512 m = _mm512_set1_ps(mul);
  for (int t = 0; t < NT; ++t) o[t * rows] = _mm512_reduce_add_ps(_mm512_fmadd_ps(acc[t], m, rest[t]));
}
#endif

// Rows [begin, end) of the head through the kernels above (GB = 0: the bit-stream widths).
template <int BITS, int GB>
void int_rows_avx512(const uint8_t* codes, const at::Half* sc, const at::Half* off, const float* hp,
                     const float* hsum, float* o, int64_t T, int64_t rows, int64_t row_bytes, int64_t groups,
                     int64_t group, float mul, float add, int64_t begin, int64_t end) {
  const int64_t dim = groups * group;
  std::vector<float> s((groups + 15) / 16 * 16);
  std::vector<__m512> rest(T);
  const __m512 a = _mm512_set1_ps(add);
  for (int64_t r = begin; r < end; ++r) {
    // the row's scales as floats, and Σ_g (scale · add + offset) · Σh_g per vector in 16 lanes: the part
    // of each logit that does not depend on the codes
    for (int64_t t = 0; t < T; ++t) rest[t] = _mm512_setzero_ps();
    for (int64_t g = 0; g < groups; g += 16) {
      const __mmask16 lanes = groups - g >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << (groups - g)) - 1);
      const __m512 sv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(lanes, sc + r * groups + g));
      _mm512_storeu_ps(s.data() + g, sv);
      __m512 k = _mm512_mul_ps(sv, a);
      if (off) k = _mm512_add_ps(k, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(lanes, off + r * groups + g)));
      for (int64_t t = 0; t < T; ++t)
        rest[t] = _mm512_fmadd_ps(k, _mm512_maskz_loadu_ps(lanes, hsum + t * groups + g), rest[t]);
    }
    const uint8_t* p = codes + r * row_bytes;
    int64_t t = 0;
    if constexpr (GB == 0) {
#if defined(__AVX512VBMI__)
      for (; t + 4 <= T; t += 4)
        int_row_logits_stream_avx512<BITS, 4>(p, s.data(), hp + t * dim, o + t * rows + r, rows, groups, group, dim,
                                              mul, rest.data() + t);
      for (; t < T; ++t)
        int_row_logits_stream_avx512<BITS, 1>(p, s.data(), hp + t * dim, o + t * rows + r, rows, groups, group, dim,
                                              mul, rest.data() + t);
#endif
    } else {
      for (; t + 4 <= T; t += 4)
        int_row_logits_avx512<BITS, GB, 4>(p, s.data(), hp + t * dim, o + t * rows + r, rows, groups, dim, mul,
                                           rest.data() + t);
      for (; t < T; ++t)
        int_row_logits_avx512<BITS, GB, 1>(p, s.data(), hp + t * dim, o + t * rows + r, rows, groups, dim, mul,
                                           rest.data() + t);
    }
  }
}
#endif

// Widths that do not divide 8 (3, 5, 6, 7): the row's bit stream is cut into a float buffer eight values
// at a time (eight values of k bits are k whole bytes, read as one little-endian word), then the group dot
// products as above. Cutting value by value made 3-bit tiers ~6× slower than 4-bit ones.
// Eight values of BITS bits are BITS whole bytes: one little-endian word (pack_bits' order) a step. The
// word is read as 8 bytes where the row has them: a BITS-byte copy into a zeroed word cost a
// store-forwarding stall a step, and was most of the kernel's time.
template <int BITS>
void unpack_eights(const uint8_t* p, int64_t n, int64_t row_bytes, float* w) {
  constexpr uint64_t kMask = (1u << BITS) - 1;
  for (int64_t i = 0; i < n; i += 8) {
    const int64_t at = i / 8 * BITS;
    uint64_t word = 0;
    if (at + 8 <= row_bytes) std::memcpy(&word, p + at, 8);
    else std::memcpy(&word, p + at, BITS);
    for (int m = 0; m < 8; ++m) w[i + m] = static_cast<float>((word >> (m * BITS)) & kMask);
  }
}

void int_row_logits_any(const uint8_t* p, const at::Half* sc, const at::Half* off, const float* h,
                        const float* hsum, float* o, int64_t T, int64_t rows, int64_t groups, int64_t group,
                        int64_t bits, int64_t row_bytes, float mul, float add, float* w) {
  const int64_t dim = groups * group;
  const unsigned mask = (1u << bits) - 1;
  const int64_t i0 = dim / 8 * 8;
  switch (bits) {
    case 3: unpack_eights<3>(p, i0, row_bytes, w); break;
    case 5: unpack_eights<5>(p, i0, row_bytes, w); break;
    case 6: unpack_eights<6>(p, i0, row_bytes, w); break;
    default: unpack_eights<7>(p, i0, row_bytes, w);
  }
  int64_t i = i0;
  for (; i < dim; ++i) {
    const int64_t bit = i * bits, byte = bit >> 3;
    unsigned word = p[byte];
    if (byte + 1 < row_bytes) word |= static_cast<unsigned>(p[byte + 1]) << 8;
    w[i] = static_cast<float>((word >> (bit & 7)) & mask);
  }
  for (int64_t t = 0; t < T; ++t) {
    float logit = 0.0f;
    for (int64_t g = 0; g < groups; ++g) {
      float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
      for (int64_t j = 0; j < group; ++j) dot += h[t * dim + g * group + j] * w[g * group + j];
      const float s = half_to_float(sc[g]), hs = hsum[t * groups + g];
      logit += s * (mul * dot + add * hs);
      if (off) logit += half_to_float(off[g]) * hs;
    }
    o[t * rows] = logit;
  }
}

}  // namespace

// The tied head straight from the codes: logits (T, V) = hidden (T, dim) · Wᵀ, row by row, never
// decoding W. At batch 1 the head is memory-bound: it reads dim·bits/8 + a few bytes a row instead of the
// dense row's 4·dim, which is where its speed comes from.
torch::Tensor logits_int(torch::Tensor packed, torch::Tensor scales, torch::Tensor offsets, torch::Tensor hidden,
                         int64_t bits, int64_t group, double mul, double add) {
  const bool has_offsets = check_int_codes(packed, scales, offsets, bits);
  const int64_t rows = packed.size(0), row_bytes = packed.size(1), groups = scales.size(1), dim = groups * group;
  const bool whole = 8 % bits == 0;
  TORCH_CHECK(dim * bits == row_bytes * 8 && (!whole || group % (8 / bits) == 0),
              "groups × group size × bits must fill the row");
  TORCH_CHECK(hidden.dtype() == torch::kFloat32 && hidden.is_contiguous() && hidden.dim() == 2 &&
              hidden.size(1) == dim, "hidden must be a contiguous float32 (T, ", dim, ") tensor");
  const int64_t T = hidden.size(0);
  auto out = torch::empty({T, rows}, torch::kFloat32);
  const float* h = hidden.data_ptr<float>();
  std::vector<float> hsum(T * groups, 0.0f);  // Σ h over each group: what the code offset and an offset multiply
  for (int64_t t = 0; t < T; ++t)
    for (int64_t g = 0; g < groups; ++g)
      for (int64_t j = 0; j < group; ++j) hsum[t * groups + g] += h[t * dim + g * group + j];
  const float m = static_cast<float>(mul), a = static_cast<float>(add);
  const uint8_t* codes = packed.data_ptr<uint8_t>();
  const at::Half* sc = scales.data_ptr<at::Half>();
  const at::Half* off = has_offsets ? offsets.data_ptr<at::Half>() : nullptr;
  float* o = out.data_ptr<float>();
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512VBMI__)
  // whole-byte widths use the bit stream too where no byte-plane kernel fits their group (2 bits in 32)
  const bool planes = whole && (group / (8 / bits)) % 16 == 0;
  if (!planes && group % 16 == 0) {
    using StreamFn = void (*)(const uint8_t*, const at::Half*, const at::Half*, const float*, const float*, float*,
                              int64_t, int64_t, int64_t, int64_t, int64_t, float, float, int64_t, int64_t);
    StreamFn fn = nullptr;
    switch (bits) {
      case 1: fn = &int_rows_avx512<1, 0>; break;
      case 2: fn = &int_rows_avx512<2, 0>; break;
      case 3: fn = &int_rows_avx512<3, 0>; break;
      case 4: fn = &int_rows_avx512<4, 0>; break;
      case 5: fn = &int_rows_avx512<5, 0>; break;
      case 6: fn = &int_rows_avx512<6, 0>; break;
      case 7: fn = &int_rows_avx512<7, 0>; break;
      default: fn = &int_rows_avx512<8, 0>;
    }
    at::parallel_for(0, rows, 256, [&](int64_t begin, int64_t end) {
      fn(codes, sc, off, h, hsum.data(), o, T, rows, row_bytes, groups, group, m, a, begin, end);
    });
    return out;
  }
#endif
  if (!whole) {
    at::parallel_for(0, rows, 256, [&](int64_t begin, int64_t end) {
      std::vector<float> w(dim);
      for (int64_t r = begin; r < end; ++r)
        int_row_logits_any(codes + r * row_bytes, sc + r * groups, off ? off + r * groups : nullptr, h, hsum.data(),
                           o + r, T, rows, groups, group, bits, row_bytes, m, a, w.data());
    });
    return out;
  }
  const int64_t per_byte = 8 / bits, group_bytes = group / per_byte;
  std::vector<float> hp(T * dim);  // hidden regrouped by position inside the byte (see int_row_logits)
  for (int64_t t = 0; t < T; ++t)
    for (int64_t g = 0; g < groups; ++g)
      for (int64_t b = 0; b < group_bytes; ++b)
        for (int64_t j = 0; j < per_byte; ++j)
          hp[t * dim + (g * per_byte + j) * group_bytes + b] = h[t * dim + g * group + b * per_byte + j];
  using RowFn = void (*)(const uint8_t*, const at::Half*, const at::Half*, const float*, const float*, float*, int64_t,
                         int64_t, int64_t, float, float);
  RowFn row_fn = nullptr;
#define EC_ROW(B, GBYTES) if (bits == B && group_bytes == GBYTES) row_fn = &int_row_logits<B, GBYTES>;
  EC_ROW(1, 4) EC_ROW(1, 8) EC_ROW(1, 16) EC_ROW(2, 4) EC_ROW(2, 8) EC_ROW(2, 16) EC_ROW(2, 32)
  EC_ROW(4, 4) EC_ROW(4, 8) EC_ROW(4, 16) EC_ROW(4, 32) EC_ROW(4, 64) EC_ROW(8, 8) EC_ROW(8, 16) EC_ROW(8, 32)
  EC_ROW(8, 64) EC_ROW(8, 128)
#undef EC_ROW
  TORCH_CHECK(row_fn != nullptr, "no logits kernel for ", bits, " bits in groups of ", group);
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
  using RowsFn = void (*)(const uint8_t*, const at::Half*, const at::Half*, const float*, const float*, float*,
                          int64_t, int64_t, int64_t, int64_t, int64_t, float, float, int64_t, int64_t);
  RowsFn rows_fn = nullptr;
#define EC_ROWS(B, GBYTES) if (bits == B && group_bytes == GBYTES) rows_fn = &int_rows_avx512<B, GBYTES>;
  EC_ROWS(1, 16) EC_ROWS(2, 16) EC_ROWS(2, 32) EC_ROWS(4, 16) EC_ROWS(4, 32) EC_ROWS(4, 64) EC_ROWS(8, 16)
  EC_ROWS(8, 32) EC_ROWS(8, 64) EC_ROWS(8, 128)
#undef EC_ROWS
  if (rows_fn != nullptr) {
    at::parallel_for(0, rows, 256, [&](int64_t begin, int64_t end) {
      rows_fn(codes, sc, off, hp.data(), hsum.data(), o, T, rows, row_bytes, groups, group, m, a, begin, end);
    });
    return out;
  }
#endif
  at::parallel_for(0, rows, 256, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const uint8_t* p = codes + r * row_bytes;
      const at::Half* offr = off ? off + r * groups : nullptr;
      row_fn(p, sc + r * groups, offr, hp.data(), hsum.data(), o + r, T, rows, groups, m, a);
    }
  });
  return out;
}

#if defined(__AVX512F__)
namespace {
// One row of Q4_0 / Q8_0 blocks for NT hidden vectors, as int_row_logits_avx512: a block's 16 code bytes
// widened once (Q4_0: each nibble through one permute of the table -8..7), every vector's sums from
// registers.
template <int NT>
void gguf_row_logits_avx512(const uint8_t* row, const float* h, float* o, int64_t rows, int64_t nblocks,
                            int64_t dim, bool q4) {
  const __m512 table = _mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7);
  const int64_t block_bytes = q4 ? 18 : 34;
  __m512 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t k = 0; k < nblocks; ++k) {
    const uint8_t* blk = row + k * block_bytes;
    at::Half d_half;
    std::memcpy(&d_half, blk, 2);
    const __m512 d = _mm512_set1_ps(half_to_float(d_half));
    __m512 lo, hi;
    if (q4) {  // value j: low nibble of byte j; value j + 16: its high nibble
      const __m512i x = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2)));
      lo = _mm512_permutexvar_ps(x, table);
      hi = _mm512_permutexvar_ps(_mm512_srli_epi32(x, 4), table);
    } else {
      lo = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2))));
      hi = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 18))));
    }
    for (int t = 0; t < NT; ++t) {
      const float* hb = h + t * dim + k * 32;
      const __m512 part = _mm512_fmadd_ps(hi, _mm512_loadu_ps(hb + 16), _mm512_mul_ps(lo, _mm512_loadu_ps(hb)));
      acc[t] = _mm512_fmadd_ps(part, d, acc[t]);
    }
  }
  for (int t = 0; t < NT; ++t) o[t * rows] = _mm512_reduce_add_ps(acc[t]);
}
}  // namespace
#endif

// The same for llama.cpp Q4_0 / Q8_0 blocks of 32: logit += d · (h_block · q) per block.
torch::Tensor logits_gguf(torch::Tensor blocks, torch::Tensor hidden, std::string qtype) {
  TORCH_CHECK(blocks.dtype() == torch::kUInt8 && blocks.is_contiguous() && blocks.dim() == 2, "bad blocks");
  TORCH_CHECK(qtype == "Q4_0" || qtype == "Q8_0", "no kernel for ", qtype);
  const bool q4 = qtype == "Q4_0";
  const int64_t block_bytes = q4 ? 18 : 34, row_bytes = blocks.size(1), nblocks = row_bytes / block_bytes;
  TORCH_CHECK(nblocks * block_bytes == row_bytes, "row bytes are not whole blocks");
  const int64_t dim = nblocks * 32, rows = blocks.size(0);
  TORCH_CHECK(hidden.dtype() == torch::kFloat32 && hidden.is_contiguous() && hidden.dim() == 2 &&
              hidden.size(1) == dim, "hidden must be a contiguous float32 (T, ", dim, ") tensor");
  const int64_t T = hidden.size(0);
  auto out = torch::empty({T, rows}, torch::kFloat32);
  const float* h = hidden.data_ptr<float>();
  const uint8_t* src = blocks.data_ptr<uint8_t>();
  float* o = out.data_ptr<float>();
#if defined(__AVX512F__)
  at::parallel_for(0, rows, 256, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      int64_t t = 0;
      for (; t + 4 <= T; t += 4)
        gguf_row_logits_avx512<4>(src + r * row_bytes, h + t * dim, o + t * rows + r, rows, nblocks, dim, q4);
      for (; t < T; ++t)
        gguf_row_logits_avx512<1>(src + r * row_bytes, h + t * dim, o + t * rows + r, rows, nblocks, dim, q4);
    }
  });
  return out;
#endif
  // Q4_0: value j of a block is the low nibble of byte j, value j + 16 its high nibble, each minus 8
  at::parallel_for(0, rows, 256, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const uint8_t* row = src + r * row_bytes;
      for (int64_t t = 0; t < T; ++t) {
        const float* ht = h + t * dim;
        float acc[32] = {};
        for (int64_t k = 0; k < nblocks; ++k) {
          const uint8_t* blk = row + k * block_bytes;
          at::Half d_half;
          std::memcpy(&d_half, blk, 2);
          const float d = half_to_float(d_half);
          const float* hb = ht + k * 32;
          if (q4) {
#pragma omp simd
            for (int l = 0; l < 16; ++l) {
              const unsigned byte = blk[2 + l];
              acc[l] += d * (hb[l] * (static_cast<float>(byte & 15u) - 8.0f) +
                             hb[l + 16] * (static_cast<float>(byte >> 4) - 8.0f));
            }
          } else {
#pragma omp simd
            for (int l = 0; l < 32; ++l) acc[l] += d * hb[l] * static_cast<float>(static_cast<int8_t>(blk[2 + l]));
          }
        }
        float logit = 0.0f;
        for (int l = 0; l < 32; ++l) logit += acc[l];
        o[t * rows + r] = logit;
      }
    }
  });
  return out;
}

// Product quantization from lookup tables: lut (S·256, T) holds h_s · centroid for every subspace s and
// centroid; a row's logit is the sum of the S entries its codes pick (× its norm factor with shape-gain,
// factor (V,) float32, else empty).
torch::Tensor logits_pq(torch::Tensor codes, torch::Tensor lut, torch::Tensor factor) {
  TORCH_CHECK(codes.dtype() == torch::kUInt8 && codes.is_contiguous() && codes.dim() == 2, "bad codes");
  const int64_t rows = codes.size(0), S = codes.size(1);
  TORCH_CHECK(lut.dtype() == torch::kFloat32 && lut.is_contiguous() && lut.dim() == 2 && lut.size(0) == S * 256,
              "bad lookup table");
  const bool gain = factor.numel() > 0;
  TORCH_CHECK(!gain || (factor.dtype() == torch::kFloat32 && factor.numel() == rows), "bad factor");
  const int64_t T = lut.size(1);
  auto out = torch::empty({T, rows}, torch::kFloat32);
  const uint8_t* c = codes.data_ptr<uint8_t>();
  const float* l = lut.data_ptr<float>();
  const float* f = gain ? factor.data_ptr<float>() : nullptr;
  float* o = out.data_ptr<float>();
  at::parallel_for(0, rows, 1024, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const uint8_t* code = c + r * S;
      if (T > 1 && T <= 16) {  // a table entry's T values are contiguous: add them as one vector, in 4 chains
        float part[4][16] = {};
        for (int64_t s = 0; s < S; ++s) {
          const float* e = l + (s * 256 + code[s]) * T;
          float* a = part[s & 3];
#pragma omp simd
          for (int64_t t = 0; t < T; ++t) a[t] += e[t];
        }
        for (int64_t t = 0; t < T; ++t) {
          const float sum = (part[0][t] + part[1][t]) + (part[2][t] + part[3][t]);
          o[t * rows + r] = gain ? sum * f[r] : sum;
        }
        continue;
      }
      for (int64_t t = 0; t < T; ++t) {
        // eight independent partial sums: one chain of S dependent adds was the kernel's whole cost
        float part[8] = {};
        int64_t s = 0;
        for (; s + 8 <= S; s += 8)
          for (int k = 0; k < 8; ++k) part[k] += l[((s + k) * 256 + code[s + k]) * T + t];
        for (; s < S; ++s) part[0] += l[(s * 256 + code[s]) * T + t];
        const float sum = ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
        o[t * rows + r] = gain ? sum * f[r] : sum;
      }
    }
  });
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("gather_int", &gather_int, "gather + decode rows of k-bit codes with fp16 group scales");
  m.def("gather_pq", &gather_pq, "gather + decode rows of product-quantized codes");
  m.def("gather_gguf", &gather_gguf, "gather + decode rows of llama.cpp Q4_0 / Q8_0 blocks");
  m.def("logits_int", &logits_int, "tied-head logits straight from k-bit codes");
  m.def("logits_gguf", &logits_gguf, "tied-head logits straight from Q4_0 / Q8_0 blocks");
  m.def("logits_pq", &logits_pq, "tied-head logits from product-quantization lookup tables");
}
