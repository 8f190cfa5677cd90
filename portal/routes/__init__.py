"""Thin HTTP controllers: parse and authorize the request, call a domain function, render or return JSON."""
