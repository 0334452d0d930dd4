"""Aliyun SMS (dysmsapi)."""
