"""fecc_runtime"""
