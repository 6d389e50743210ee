"""Running trained systems on test pairs: scoring and accuracy (stage 4), the alignment tax, generation and judged
comparisons (stage 5). Imports core, lm, stats, data and personas."""
