"""The paper's model: config, layers, the adjacency of Eqs. 3-5, graphs, augmentation, losses, SSU."""
