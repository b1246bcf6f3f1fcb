"""HTML of received messages, made safe to show inside our page (nh3, the Rust
ammonia sanitiser): an allow-list of tags and attributes, no script, no style
attribute (nothing to restyle or overlay our page with), no event handler, links
kept with rel="noopener noreferrer nofollow", and no image at all: a remote image
would tell its sender when and from where the patient read the message (a tracking
pixel), so every image becomes its alt text. The page's CSP blocks anything missed."""
from __future__ import annotations

import re

import nh3

_TAGS = {"a", "abbr", "b", "blockquote", "br", "caption", "cite", "code", "dd", "div", "dl", "dt", "em",
         "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "li", "ol", "p", "pre", "q", "s", "small",
         "span", "strong", "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "u", "ul"}
_ATTRIBUTES = {"a": {"href", "title"}, "img": {"alt"}, "td": {"colspan", "rowspan"},
               "th": {"colspan", "rowspan", "scope"}, "abbr": {"title"}}
# nh3 serialises with html5ever: attributes double-quoted, '"' written &quot;
_IMG = re.compile(r"<img(?:\s+alt=\"([^\"]*)\")?\s*/?>")


def clean_html(html: str) -> str:
    """Safe HTML for a message body (a string to mark safe in the template)."""
    cleaned = nh3.clean(html, tags=_TAGS, attributes=_ATTRIBUTES, url_schemes={"http", "https", "mailto"},
                        link_rel="noopener noreferrer nofollow", strip_comments=True)
    return _IMG.sub(lambda m: m.group(1) or "", cleaned)
