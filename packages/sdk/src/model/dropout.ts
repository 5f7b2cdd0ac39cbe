// Dropout sites of a decoder layer: each site (LoRA inputs, residual branches) gets its own stretch
// of the counter-based RNG's space, so a mask depends only on (seed, layer, site, element) — the
// same in the forward, the backward and a checkpointed recompute, on every backend.

/** Seeds for the dropout sites of one layer in one step (undefined = no dropout). */
export interface LayerDropout {
  seed: number;
  residualP: number;
  layer: number;
}

const SITE_STRIDE = 2 ** 36;

/** The element offset of site s (0..7) of the layer. */
export const site = (d: LayerDropout, s: number) => (d.layer * 8 + s) * SITE_STRIDE;

/** The residual dropout of site s (undefined when off); its backward is the same mask on the grad. */
export const residualDrop = (d: LayerDropout | undefined, s: number) =>
  d && d.residualP > 0 ? { p: d.residualP, seed: d.seed, offset: site(d, s) } : undefined;
