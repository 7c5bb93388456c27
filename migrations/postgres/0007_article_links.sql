-- The links an article is known by (issue 13 §4): the same article read through another
-- source (MP list: the long `?__biz=&mid=&idx=` link; WeRead: the short `/s/<token>` one,
-- sometimes the long one as `doc_url`) is matched to the row its feed already has by one of
-- these keys (`fetch::links::link_key`), and keeps that row's id. Filled from `we_articles.url`
-- once when created, then by every upload.
CREATE TABLE IF NOT EXISTS cascade_article_links (
    mp_id VARCHAR(255) NOT NULL,
    link VARCHAR(1000) NOT NULL,
    article_id VARCHAR(255) NOT NULL,
    PRIMARY KEY (mp_id, link)
);
CREATE INDEX IF NOT EXISTS ix_cascade_article_links_article
    ON cascade_article_links (article_id);
