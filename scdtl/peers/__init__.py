"""Peer imputation methods behind scdtl's common interface: (observed AnnData, genes) -> log1p_norm values."""
