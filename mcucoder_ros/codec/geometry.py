"""Fixed geometry of the MCUCoder latent (the paper's architecture)."""
IMAGE_SIZE = 224          # frames are resized to 224x224 before coding
LATENT_CHANNELS = 12      # importance-sorted channels
LATENT_SIZE = 28          # each channel is 28x28
SYMBOL_BITS = 6           # per-channel quantised symbols, 0..63
NUM_SYMBOLS = 1 << SYMBOL_BITS
