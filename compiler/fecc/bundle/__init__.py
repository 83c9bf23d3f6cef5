"""Bundle packaging: the staging writer and the manifest format."""
from .writer import FORMAT, FORMAT_VERSION, BundleWriter, dumps_manifest, sha256_file

__all__ = ["BundleWriter", "FORMAT", "FORMAT_VERSION", "dumps_manifest", "sha256_file"]
