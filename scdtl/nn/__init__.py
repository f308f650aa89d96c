"""Torch building blocks of scDTL (tensors in, tensors out): denoising autoencoder, MMD, 1D U-Net, CBAM fusion."""
