"""What a trained run carries beside its checkpoints, fitted after training: its own sampler
(``sampler.pt``) and its mask attribute (``attribute.pt``), and the callback that fits them."""
