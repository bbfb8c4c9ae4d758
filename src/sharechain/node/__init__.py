"""sharechain.node"""
